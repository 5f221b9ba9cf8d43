//! `QueueRepository`: the waiting lines in the embedded store, with the same outcomes as
//! PostgreSQL's (`adapters/postgres/src/queue.rs`, docs/DATABASE.md §5.7–§5.9, §5.12).
//!
//! - A join moves the user's place (`queue_members`) from the version the decision read, then
//!   draws the next place of the line from its `counters` row `queue_line_{n}`, in the same
//!   transaction: a duplicate request loses the compare-and-set and draws nothing, and a number
//!   is drawn only by a transaction that commits, so places have no gaps.
//! - PostgreSQL's queue lock (shared by joins, exclusive for a step or an opening) is not needed:
//!   every write here is one `BEGIN IMMEDIATE` transaction on the store's one connection, so
//!   writers already run one at a time. A step never sees a drawn but uncommitted number, and
//!   nothing joins, pays or polls between its reads and its writes.
//! - An admission step or an opening reads, asks the caller's rules (see [`rules`]) and writes
//!   in one transaction; its writes still compare each ticket with the state read, as
//!   PostgreSQL's do, and a mismatch rolls the whole step back (`Stale`).

mod admission;
mod pre_queue;

use async_trait::async_trait;
use concert_application::ports::{
    ActivityWrite, AdmissionReport, AdmissionRules, EndedTicket, EndedWaiting, JoinWrite,
    LiveTicket, OpeningRules, PreQueueEnd, PreQueueEntry, PreQueueJoin, PreQueueJoined,
    PreQueueOutcome, QueueRepository, QueueSnapshot, RepositoryError, TicketEnd, Version,
    WaitingPoll, Written,
};
use concert_domain::queue::ServingCounter;
use concert_domain::{EndReason, LineNo, QueueTicket, TicketNo, TicketStatus, UserId};
use diesel::SqliteConnection;
use diesel::result::Error as DieselError;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, OptionalExtension, QueryableByName, RunQueryDsl};
use time::OffsetDateTime;

use crate::columns::{instant, instant_opt, micros, user_id, user_text};
use crate::counters;
use crate::error::{corrupt, from_diesel};
use crate::store::SqliteStore;

const WAITING: &str = TicketStatus::Waiting.as_str();
const ACTIVE: &str = TicketStatus::Active.as_str();
const EXPIRED: &str = TicketStatus::Expired.as_str();

#[derive(Debug, Clone)]
pub struct SqliteQueueRepository {
    store: SqliteStore,
}

impl SqliteQueueRepository {
    pub fn new(store: SqliteStore) -> Self {
        Self { store }
    }
}

/// A `queue_tickets` row, as selected by [`TICKET_COLUMNS`].
#[derive(Debug, QueryableByName)]
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

const TICKET_COLUMNS: &str =
    "ticket, user_id, status, issued_at, active_until, last_seen, end_reason";

impl TicketRow {
    fn into_domain(self) -> Result<QueueTicket, RepositoryError> {
        Ok(QueueTicket::restore(
            TicketNo::new(self.ticket).map_err(corrupt)?,
            user_id(&self.user_id)?,
            parse_ticket_status(&self.status)?,
            instant(self.issued_at)?,
            instant_opt(self.active_until)?,
            instant_opt(self.last_seen)?,
        )
        .with_end_reason(parse_end_reason(self.end_reason.as_deref())?))
    }
}

fn tickets(rows: Vec<TicketRow>) -> Result<Vec<QueueTicket>, RepositoryError> {
    rows.into_iter().map(TicketRow::into_domain).collect()
}

fn parse_ticket_status(raw: &str) -> Result<TicketStatus, RepositoryError> {
    TicketStatus::parse(raw).ok_or_else(|| corrupt(format!("ticket status {raw:?}")))
}

fn parse_end_reason(raw: Option<&str>) -> Result<Option<EndReason>, RepositoryError> {
    raw.map(|raw| EndReason::parse(raw).ok_or_else(|| corrupt(format!("end reason {raw:?}"))))
        .transpose()
}

/// A line's key in the tables that have one row per line.
fn line_key(line: LineNo) -> i64 {
    i64::from(line.get())
}

/// A line's ticket numbers: above its start, below its end.
fn line_range(line: LineNo) -> (i64, i64) {
    (line.start().get(), line.end())
}

/// The `counters` row a line draws its places from (PostgreSQL's `queue_line_{n}_seq`).
fn line_counter(line: LineNo) -> String {
    format!("queue_line_{line}")
}

/// The `counters` row pre-queue entries are numbered from (PostgreSQL's
/// `pre_queue_entries_seq`, shared by every line).
const PRE_QUEUE_COUNTER: &str = "pre_queue_entries";

/// The ticket number of place `place` (1 is the first) of `line`; an error past the lower half
/// of the line's range, where PostgreSQL's sequence reaches its `MAXVALUE`.
fn place_number(line: LineNo, place: i64) -> Result<i64, RepositoryError> {
    let number = line.start().get() + place;
    if place >= 1 && number <= line.pre_queue_start() {
        Ok(number)
    } else {
        Err(RepositoryError::Unexpected(
            format!("line {line} has no place {place}").into(),
        ))
    }
}

/// The answer of a compare-and-set `UPDATE` of one row: written, or the row was not as read.
fn one_row(affected: usize) -> Written<()> {
    if affected == 1 {
        Written::Done(())
    } else {
        Written::Stale
    }
}

/// Why a step (admission, opening) ended early; its savepoint is rolled back either way.
enum StepAbort {
    /// A row changed between the step's reads and its writes (or, with one writer, the rules
    /// decided on a ticket not in the state read): nothing is written.
    Stale,
    Failed(RepositoryError),
}

impl From<DieselError> for StepAbort {
    fn from(error: DieselError) -> Self {
        Self::Failed(from_diesel(error))
    }
}

impl From<RepositoryError> for StepAbort {
    fn from(error: RepositoryError) -> Self {
        Self::Failed(error)
    }
}

/// Runs `step` in a savepoint of the calling write transaction: rolled back whole when it is
/// stale or fails, kept (and committed with the transaction) when it is done.
fn in_savepoint<T>(
    conn: &mut SqliteConnection,
    step: impl FnOnce(&mut SqliteConnection) -> Result<T, StepAbort>,
) -> Result<Written<T>, RepositoryError> {
    match conn.transaction::<T, StepAbort, _>(step) {
        Ok(done) => Ok(Written::Done(done)),
        Err(StepAbort::Stale) => Ok(Written::Stale),
        Err(StepAbort::Failed(error)) => Err(error),
    }
}

/// An ended ticket as [`QueueRepository::ended_since`] and [`QueueRepository::ended_waiting`]
/// select it.
#[derive(QueryableByName)]
struct EndedRow {
    #[diesel(sql_type = BigInt)]
    ticket: i64,
    #[diesel(sql_type = Nullable<Text>)]
    end_reason: Option<String>,
    #[diesel(sql_type = BigInt)]
    ended_at: i64,
}

impl EndedRow {
    fn into_ended(self) -> Result<EndedTicket, RepositoryError> {
        Ok(EndedTicket {
            ticket: TicketNo::new(self.ticket).map_err(corrupt)?,
            reason: parse_end_reason(self.end_reason.as_deref())?,
            ended_at: instant(self.ended_at)?,
        })
    }
}

fn count_u64(raw: i64) -> Result<u64, RepositoryError> {
    u64::try_from(raw).map_err(corrupt)
}

#[async_trait]
impl QueueRepository for SqliteQueueRepository {
    async fn load_live(&self, user: UserId, line: LineNo) -> Result<LiveTicket, RepositoryError> {
        #[derive(QueryableByName)]
        struct Member {
            #[diesel(sql_type = BigInt)]
            version: i64,
        }
        self.store
            .read(move |conn| {
                let user = user_text(user);
                // `ticket >> 40` as the one-live-ticket index spells it, so it is used.
                let row: Option<TicketRow> = diesel::sql_query(format!(
                    "SELECT {TICKET_COLUMNS} FROM queue_tickets \
                     WHERE user_id = ? AND (ticket >> 40) = ? AND status IN ('{WAITING}', '{ACTIVE}')"
                ))
                .bind::<Text, _>(&user)
                .bind::<BigInt, _>(line_key(line))
                .get_result(conn)
                .optional()
                .map_err(from_diesel)?;
                let member: Option<Member> = diesel::sql_query(
                    "SELECT version FROM queue_members WHERE user_id = ? AND line = ?",
                )
                .bind::<Text, _>(&user)
                .bind::<BigInt, _>(line_key(line))
                .get_result(conn)
                .optional()
                .map_err(from_diesel)?;
                let version = match member {
                    None => Version::ABSENT,
                    Some(Member { version }) if version > 0 => Version::new(version),
                    Some(Member { version }) => {
                        return Err(corrupt(format!("row version {version}")));
                    }
                };
                Ok(LiveTicket {
                    ticket: row.map(TicketRow::into_domain).transpose()?,
                    version,
                })
            })
            .await
    }

    async fn save_join(&self, write: &JoinWrite) -> Result<Written<QueueTicket>, RepositoryError> {
        let write = *write;
        self.store
            .write(move |conn| {
                let user = user_text(write.user);
                // The user's place moves from the version read (a first join inserts it, at the
                // version read + 1 as PostgreSQL's upsert does); otherwise nothing is drawn.
                let moved = diesel::sql_query(
                    "INSERT INTO queue_members (user_id, line, version) VALUES (?1, ?2, ?3 + 1) \
                     ON CONFLICT (user_id, line) DO UPDATE SET version = version + 1 \
                     WHERE version = ?3",
                )
                .bind::<Text, _>(&user)
                .bind::<BigInt, _>(line_key(write.line))
                .bind::<BigInt, _>(write.version.get())
                .execute(conn)
                .map_err(from_diesel)?;
                if moved != 1 {
                    return Ok(Written::Stale);
                }
                let place = counters::draw(conn, &line_counter(write.line)).map_err(from_diesel)?;
                let row: TicketRow = diesel::sql_query(format!(
                    "INSERT INTO queue_tickets (ticket, user_id, status, issued_at) \
                     VALUES (?, ?, '{WAITING}', ?) RETURNING {TICKET_COLUMNS}"
                ))
                .bind::<BigInt, _>(place_number(write.line, place)?)
                .bind::<Text, _>(&user)
                .bind::<BigInt, _>(micros(write.now))
                .get_result(conn)
                .map_err(from_diesel)?;
                Ok(Written::Done(row.into_domain()?))
            })
            .await
    }

    async fn end(
        &self,
        end: &TicketEnd,
        now: OffsetDateTime,
    ) -> Result<Written<()>, RepositoryError> {
        #[derive(QueryableByName)]
        struct Ended {
            #[diesel(sql_type = Nullable<BigInt>)]
            admitted_at: Option<i64>,
        }
        let end = *end;
        self.store
            .write(move |conn| {
                let ended: Option<Ended> = diesel::sql_query(format!(
                    "UPDATE queue_tickets SET status = '{EXPIRED}', ended_at = ?, end_reason = ? \
                     WHERE ticket = ? AND status = ? RETURNING admitted_at"
                ))
                .bind::<BigInt, _>(micros(now))
                .bind::<Text, _>(end.reason.as_str())
                .bind::<BigInt, _>(end.ticket.get())
                .bind::<Text, _>(end.read_as.as_str())
                .get_result(conn)
                .optional()
                .map_err(from_diesel)?;
                let Some(ended) = ended else {
                    return Ok(Written::Stale);
                };
                // A ticket that ended while waiting is tallied out of the line's waiting count.
                if ended.admitted_at.is_none() {
                    diesel::sql_query(
                        "UPDATE queue_state SET ended_waiting_total = ended_waiting_total + 1 \
                         WHERE line = ?",
                    )
                    .bind::<BigInt, _>(line_key(end.ticket.line()))
                    .execute(conn)
                    .map_err(from_diesel)?;
                }
                Ok(Written::Done(()))
            })
            .await
    }

    async fn find(&self, ticket: TicketNo) -> Result<Option<QueueTicket>, RepositoryError> {
        self.store
            .read(move |conn| {
                let row: Option<TicketRow> = diesel::sql_query(format!(
                    "SELECT {TICKET_COLUMNS} FROM queue_tickets WHERE ticket = ?"
                ))
                .bind::<BigInt, _>(ticket.get())
                .get_result(conn)
                .optional()
                .map_err(from_diesel)?;
                row.map(TicketRow::into_domain).transpose()
            })
            .await
    }

    async fn record_activity(&self, write: &ActivityWrite) -> Result<Written<()>, RepositoryError> {
        let write = *write;
        self.store
            .write(move |conn| {
                // `IS`: SQLite's `IS NOT DISTINCT FROM` (NULL read matches NULL stored).
                let recorded = diesel::sql_query(format!(
                    "UPDATE queue_tickets SET last_seen = ? \
                     WHERE ticket = ? AND status = '{ACTIVE}' AND last_seen IS ?"
                ))
                .bind::<BigInt, _>(micros(write.last_seen))
                .bind::<BigInt, _>(write.ticket.get())
                .bind::<Nullable<BigInt>, _>(write.read_last_seen.map(micros))
                .execute(conn)
                .map_err(from_diesel)?;
                Ok(one_row(recorded))
            })
            .await
    }

    async fn record_waiting_polls(&self, polls: &[WaitingPoll]) -> Result<u64, RepositoryError> {
        if polls.is_empty() {
            return Ok(0);
        }
        // One write per ticket, its latest poll (PostgreSQL's batch writes a ticket once too).
        let mut latest: Vec<(i64, i64)> = polls
            .iter()
            .map(|poll| (poll.ticket.get(), micros(poll.at)))
            .collect();
        latest.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        latest.dedup_by_key(|(ticket, _)| *ticket);
        self.store
            .write(move |conn| {
                let mut written = 0_u64;
                for (ticket, seen) in latest {
                    // Only forward and only while waiting: a later poll written by another
                    // request stays, and an admitted ticket's activity is not touched.
                    let updated = diesel::sql_query(format!(
                        "UPDATE queue_tickets SET last_seen = ?1 \
                         WHERE ticket = ?2 AND status = '{WAITING}' \
                           AND (last_seen IS NULL OR last_seen < ?1)"
                    ))
                    .bind::<BigInt, _>(seen)
                    .bind::<BigInt, _>(ticket)
                    .execute(conn)
                    .map_err(from_diesel)?;
                    written += u64::try_from(updated).unwrap_or(u64::MAX);
                }
                Ok(written)
            })
            .await
    }

    async fn admit(
        &self,
        line: LineNo,
        now: OffsetDateTime,
        rules: &(dyn AdmissionRules + 'static),
    ) -> Result<Written<AdmissionReport>, RepositoryError> {
        // The rules are borrowed: the step runs on this thread (see `SqliteStore::write_here`).
        self.store.write_here(|conn| {
            in_savepoint(conn, |conn| {
                admission::admit_in_transaction(conn, line, now, rules)
            })
        })
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
        self.store
            .read(move |conn| {
                let (start, end) = line_range(line);
                // O(1) in the length of the line, as on PostgreSQL (docs/DATABASE.md §5.9): the
                // tickets up to `issued_hwm` were counted by the last admission step; only those
                // issued since are counted here.
                let row: Snapshot = diesel::sql_query(format!(
                    "SELECT s.serving, s.admitted_total, \
                            s.issued_total - s.admitted_total - s.ended_waiting_total \
                              + fresh.count AS waiting, \
                            (SELECT count(*) FROM queue_tickets t \
                             WHERE t.status = '{ACTIVE}' AND t.ticket > ?2 AND t.ticket < ?3) \
                              AS active, \
                            s.issued_total + fresh.count AS issued, \
                            (SELECT count(*) FROM pre_queue q \
                             WHERE q.line = ?1 AND q.ticket IS NULL AND q.ended_at IS NULL) \
                              AS pre_queued \
                     FROM queue_state s, \
                          (SELECT count(*) AS count FROM queue_tickets t, queue_state h \
                           WHERE h.line = ?1 AND t.ticket > h.issued_hwm AND t.ticket < ?3) \
                            AS fresh \
                     WHERE s.line = ?1"
                ))
                .bind::<BigInt, _>(line_key(line))
                .bind::<BigInt, _>(start)
                .bind::<BigInt, _>(end)
                .get_result(conn)
                .map_err(from_diesel)?;
                Ok(QueueSnapshot {
                    serving: ServingCounter::new(row.serving),
                    admitted_total: count_u64(row.admitted_total)?,
                    waiting: count_u64(row.waiting)?,
                    active: count_u64(row.active)?,
                    issued: count_u64(row.issued)?,
                    pre_queued: count_u64(row.pre_queued)?,
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
        self.store
            .read(move |conn| {
                let rows: Vec<EndedRow> = diesel::sql_query(format!(
                    "SELECT ticket, end_reason, ended_at FROM queue_tickets \
                     WHERE status = '{EXPIRED}' AND ended_at >= ? AND ticket > ? AND ticket < ?"
                ))
                .bind::<BigInt, _>(micros(since))
                .bind::<BigInt, _>(start)
                .bind::<BigInt, _>(end)
                .load(conn)
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
        self.store
            .read(move |conn| pre_queue::load(conn, user, line))
            .await
    }

    async fn save_pre_queue_join(
        &self,
        write: &PreQueueJoin,
    ) -> Result<PreQueueJoined, RepositoryError> {
        let write = *write;
        self.store
            .write(move |conn| pre_queue::join(conn, &write))
            .await
    }

    async fn end_pre_queue(
        &self,
        entry: TicketNo,
        user: UserId,
        reason: EndReason,
        now: OffsetDateTime,
    ) -> Result<PreQueueEnd, RepositoryError> {
        self.store
            .write(move |conn| pre_queue::end(conn, entry, user, reason, now))
            .await
    }

    async fn open_line(
        &self,
        line: LineNo,
        now: OffsetDateTime,
        rules: &(dyn OpeningRules + 'static),
    ) -> Result<Written<u64>, RepositoryError> {
        // The rules are borrowed: the opening runs on this thread (see `SqliteStore::write_here`).
        self.store.write_here(|conn| {
            in_savepoint(conn, |conn| {
                pre_queue::open_in_transaction(conn, line, now, rules)
            })
        })
    }

    async fn pre_queue_outcomes(
        &self,
        line: LineNo,
    ) -> Result<Vec<PreQueueOutcome>, RepositoryError> {
        self.store
            .read(move |conn| pre_queue::outcomes(conn, line))
            .await
    }

    async fn ended_waiting(
        &self,
        serving: ServingCounter,
    ) -> Result<Vec<EndedWaiting>, RepositoryError> {
        self.store
            .read(move |conn| {
                let rows: Vec<EndedRow> = diesel::sql_query(format!(
                    "SELECT ticket, end_reason, ended_at FROM queue_tickets \
                     WHERE status = '{EXPIRED}' AND admitted_at IS NULL \
                       AND ticket > ? AND ticket < ? \
                     ORDER BY ticket"
                ))
                .bind::<BigInt, _>(serving.get())
                .bind::<BigInt, _>(serving.line().end())
                .load(conn)
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
