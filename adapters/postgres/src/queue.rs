//! `QueueRepository`: the waiting line in PostgreSQL.
//!
//! - Ticket numbers come from the `queue_tickets` sequence, drawn only after the user's live
//!   ticket was looked up under a per-user advisory lock: a user's duplicate request never
//!   consumes a number, so positions have no gaps.
//! - Every issue holds the queue lock in SHARED mode from before it draws a number until it
//!   commits; the admission step takes it EXCLUSIVE. So admission never runs while a drawn but
//!   uncommitted number exists, and cannot admit ticket n+1 while ticket n is still invisible to
//!   it (which would break first come, first served).
//! - The admission step admits the oldest waiting tickets with `ORDER BY ticket LIMIT free FOR
//!   UPDATE`, without SKIP LOCKED: steps are already serialised by the exclusive lock, and
//!   skipping a locked row would let a later ticket pass an earlier one.

use async_trait::async_trait;
use concert_application::ports::{
    AdmissionReport, IssuedTicket, QueueRepository, QueueSnapshot, RepositoryError,
};
use concert_domain::queue::{ServingCounter, active_deadline};
use concert_domain::{QueuePolicy, QueueTicket, TicketNo, TicketStatus, UserId};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cached::CachedExt;
use crate::error::{corrupt, from_diesel};
use crate::locks;
use crate::pool::PgPool;
use crate::schema::{queue_state, queue_tickets};

const WAITING: &str = "WAITING";
const ACTIVE: &str = "ACTIVE";
const EXPIRED: &str = "EXPIRED";

#[derive(Debug, Clone)]
pub struct PgQueueRepository {
    pool: PgPool,
}

impl PgQueueRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = queue_tickets, check_for_backend(diesel::pg::Pg))]
struct TicketRow {
    ticket: i64,
    user_id: Uuid,
    status: String,
    issued_at: OffsetDateTime,
    active_until: Option<OffsetDateTime>,
    last_seen: Option<OffsetDateTime>,
}

impl TicketRow {
    fn into_domain(self) -> Result<QueueTicket, RepositoryError> {
        Ok(QueueTicket {
            ticket: TicketNo::new(self.ticket).map_err(corrupt)?,
            user: UserId::from_uuid(self.user_id),
            status: TicketStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("ticket status {:?}", self.status)))?,
            issued_at: self.issued_at,
            active_until: self.active_until,
            last_seen: self.last_seen,
        })
    }
}

#[async_trait]
impl QueueRepository for PgQueueRepository {
    async fn issue(
        &self,
        user: UserId,
        now: OffsetDateTime,
        policy: &QueuePolicy,
    ) -> Result<IssuedTicket, RepositoryError> {
        let policy = *policy;
        let pool = self.pool.clone();
        // On its own task: a request dropped mid-transaction (client gone) must not roll back a
        // drawn ticket number, which would leave a gap that every position behind it counts.
        let issuing = tokio::spawn(async move {
            pool.run(async {
                let mut conn = pool.get().await?;
                let (row, created) = conn
                    .transaction::<_, diesel::result::Error, _>(async |conn| {
                        issue_in_transaction(conn, user, now, &policy).await
                    })
                    .await
                    .map_err(from_diesel)?;
                Ok(IssuedTicket {
                    ticket: row.into_domain()?,
                    created,
                })
            })
            .await
        });
        issuing
            .await
            .map_err(|error| RepositoryError::Unexpected(Box::new(error)))?
    }

    async fn find(&self, ticket: TicketNo) -> Result<Option<QueueTicket>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: Option<TicketRow> = queue_tickets::table
                    .find(ticket.get())
                    .select(TicketRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(from_diesel)?;
                row.map(TicketRow::into_domain).transpose()
            })
            .await
    }

    async fn record_activity(
        &self,
        ticket: TicketNo,
        now: OffsetDateTime,
    ) -> Result<(), RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                // `greatest`: instances' clocks may differ a little; activity never moves back.
                diesel::sql_query(
                    "UPDATE queue_tickets SET last_seen = greatest(last_seen, $2) \
                     WHERE ticket = $1 AND status = 'ACTIVE'",
                )
                .bind::<BigInt, _>(ticket.get())
                .bind::<Timestamptz, _>(now)
                .cached()
                .execute(&mut conn)
                .await
                .map(|_| ())
                .map_err(from_diesel)
            })
            .await
    }

    async fn admit(
        &self,
        policy: &QueuePolicy,
        now: OffsetDateTime,
    ) -> Result<AdmissionReport, RepositoryError> {
        let policy = *policy;
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                    admit_in_transaction(conn, &policy, now).await
                })
                .await
                .map_err(from_diesel)
            })
            .await
    }

    async fn snapshot(&self) -> Result<QueueSnapshot, RepositoryError> {
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
        }
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                // O(1) in the length of the line: the tickets up to `issued_hwm` were counted by
                // the last admission step; only the few issued since are counted here. Waiting
                // tickets leave the line only by admission, so waiting = issued − admitted.
                let row: Snapshot = diesel::sql_query(
                    "SELECT s.serving, s.admitted_total, \
                            s.issued_total - s.admitted_total \
                              + (SELECT count(*) FROM queue_tickets t WHERE t.ticket > s.issued_hwm) \
                              AS waiting, \
                            (SELECT count(*) FROM queue_tickets t WHERE t.status = 'ACTIVE') AS active \
                     FROM queue_state s WHERE s.id = 1",
                )
                .cached()
                .get_result(&mut conn)
                .await
                .map_err(from_diesel)?;
                Ok(QueueSnapshot {
                    serving: ServingCounter::new(row.serving),
                    admitted_total: u64::try_from(row.admitted_total).map_err(corrupt)?,
                    waiting: u64::try_from(row.waiting).map_err(corrupt)?,
                    active: u64::try_from(row.active).map_err(corrupt)?,
                })
            })
            .await
    }
}

async fn issue_in_transaction(
    conn: &mut AsyncPgConnection,
    user: UserId,
    now: OffsetDateTime,
    policy: &QueuePolicy,
) -> Result<(TicketRow, bool), diesel::result::Error> {
    // Shared: many issues at once, but never while an admission step runs.
    diesel::sql_query("SELECT pg_advisory_xact_lock_shared($1, 0)")
        .bind::<Integer, _>(locks::QUEUE)
        .cached()
        .execute(conn)
        .await?;
    // One user's requests one at a time: the loser of a race finds the winner's ticket.
    diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
        .bind::<Integer, _>(locks::USER_TICKETS)
        .bind::<SqlUuid, _>(user.get())
        .cached()
        .execute(conn)
        .await?;
    let live: Option<TicketRow> = queue_tickets::table
        .filter(queue_tickets::user_id.eq(user.get()))
        .filter(queue_tickets::status.eq_any([WAITING, ACTIVE]))
        .select(TicketRow::as_select())
        .first(conn)
        .await
        .optional()?;
    if let Some(row) = live {
        let ended = row.status == ACTIVE && deadline_passed(&row, policy, now);
        if !ended {
            return Ok((row, false));
        }
        // Active but past its active or idle deadline: it has ended, write it down.
        diesel::update(queue_tickets::table.find(row.ticket))
            .set((
                queue_tickets::status.eq(EXPIRED),
                queue_tickets::ended_at.eq(Some(now)),
            ))
            .cached()
            .execute(conn)
            .await?;
    }
    let row: TicketRow = diesel::insert_into(queue_tickets::table)
        .values((
            queue_tickets::user_id.eq(user.get()),
            queue_tickets::status.eq(WAITING),
            queue_tickets::issued_at.eq(now),
        ))
        .returning(TicketRow::as_returning())
        .get_result(conn)
        .await?;
    Ok((row, true))
}

fn deadline_passed(row: &TicketRow, policy: &QueuePolicy, now: OffsetDateTime) -> bool {
    active_deadline(row.active_until, row.last_seen, policy).is_some_and(|end| end <= now)
}

async fn admit_in_transaction(
    conn: &mut AsyncPgConnection,
    policy: &QueuePolicy,
    now: OffsetDateTime,
) -> Result<AdmissionReport, diesel::result::Error> {
    #[derive(QueryableByName)]
    struct Issued {
        #[diesel(sql_type = BigInt)]
        count: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        max: Option<i64>,
    }
    #[derive(QueryableByName)]
    struct Admitted {
        #[diesel(sql_type = BigInt)]
        ticket: i64,
    }
    // Exclusive: waits for every in-flight issue to commit, and keeps other steps out.
    diesel::sql_query("SELECT pg_advisory_xact_lock($1, 0)")
        .bind::<Integer, _>(locks::QUEUE)
        .cached()
        .execute(conn)
        .await?;
    // 1. End active tickets past their active or idle deadline.
    let idle_cutoff = now - policy.idle_deadline_after_activity();
    let expired = diesel::update(queue_tickets::table)
        .filter(queue_tickets::status.eq(ACTIVE))
        .filter(
            queue_tickets::active_until
                .le(now)
                .or(queue_tickets::last_seen.le(idle_cutoff)),
        )
        .set((
            queue_tickets::status.eq(EXPIRED),
            queue_tickets::ended_at.eq(Some(now)),
        ))
        .cached()
        .execute(conn)
        .await?;
    // 2. Count the tickets issued since the last step (all committed: no issue is in flight).
    let (hwm, issued_total): (i64, i64) = queue_state::table
        .find(1)
        .select((queue_state::issued_hwm, queue_state::issued_total))
        .for_update()
        .first(conn)
        .await?;
    let issued: Issued = diesel::sql_query(
        "SELECT count(*) AS count, max(ticket) AS max FROM queue_tickets WHERE ticket > $1",
    )
    .bind::<BigInt, _>(hwm)
    .cached()
    .get_result(conn)
    .await?;
    // 3. Fill the free slots with the oldest waiting tickets, in ticket order.
    let active: i64 = queue_tickets::table
        .filter(queue_tickets::status.eq(ACTIVE))
        .count()
        .get_result(conn)
        .await?;
    let free = policy.free_slots(u32::try_from(active).unwrap_or(u32::MAX));
    let admitted: Vec<Admitted> = if free == 0 {
        Vec::new()
    } else {
        diesel::sql_query(
            "UPDATE queue_tickets \
             SET status = 'ACTIVE', admitted_at = $1, active_until = $2, last_seen = $1 \
             WHERE ticket IN ( \
                 SELECT ticket FROM queue_tickets WHERE status = 'WAITING' \
                 ORDER BY ticket LIMIT $3 FOR UPDATE) \
             RETURNING ticket",
        )
        .bind::<Timestamptz, _>(now)
        .bind::<Timestamptz, _>(now + policy.active_ttl)
        .bind::<BigInt, _>(i64::from(free))
        .cached()
        .load(conn)
        .await?
    };
    let admitted_count = i64::try_from(admitted.len()).unwrap_or(i64::MAX);
    let highest = admitted.iter().map(|a| a.ticket).max().unwrap_or(0);
    // 4. Move the counters forward (never back).
    let serving: i64 = diesel::update(queue_state::table.find(1))
        .set((
            queue_state::serving.eq(diesel::dsl::sql::<BigInt>("greatest(serving, ")
                .bind::<BigInt, _>(highest)
                .sql(")")),
            queue_state::admitted_total.eq(queue_state::admitted_total + admitted_count),
            queue_state::issued_total.eq(issued_total + issued.count),
            queue_state::issued_hwm.eq(issued.max.unwrap_or(hwm).max(hwm)),
        ))
        .returning(queue_state::serving)
        .cached()
        .get_result(conn)
        .await?;
    Ok(AdmissionReport {
        expired: u64::try_from(expired).unwrap_or(u64::MAX),
        admitted: u64::try_from(admitted_count).unwrap_or(0),
        serving: ServingCounter::new(serving),
    })
}
