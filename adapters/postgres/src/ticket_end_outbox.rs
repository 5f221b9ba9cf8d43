//! `TicketEndOutbox`: the ticket ends payments wrote to `ticket_end_outbox` (payments built with
//! `TicketEnds::Outbox`), read by the relay oldest first and deleted once applied.

use async_trait::async_trait;
use concert_application::ports::{PendingTicketEnd, RepositoryError, TicketEnd, TicketEndOutbox};
use concert_domain::{EndReason, TicketNo, UserId};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cached::CachedExt;
use crate::columns::parse_ticket_status;
use crate::error::{corrupt, from_diesel};
use crate::pool::PgPool;

#[derive(Debug, Clone)]
pub struct PgTicketEndOutbox {
    pool: PgPool,
}

impl PgTicketEndOutbox {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    ticket: i64,
    #[diesel(sql_type = SqlUuid)]
    payer: Uuid,
    #[diesel(sql_type = Text)]
    read_as: String,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = Timestamptz)]
    written_at: OffsetDateTime,
}

impl Row {
    fn into_domain(self) -> Result<PendingTicketEnd, RepositoryError> {
        let reason = EndReason::parse(&self.reason)
            .ok_or_else(|| corrupt(format!("end reason {:?}", self.reason)))?;
        Ok(PendingTicketEnd {
            end: TicketEnd {
                ticket: TicketNo::new(self.ticket).map_err(corrupt)?,
                read_as: parse_ticket_status(&self.read_as)?,
                reason,
            },
            payer: UserId::from_uuid(self.payer),
            written_at: self.written_at,
        })
    }
}

const PENDING: &str = "SELECT ticket, payer, read_as, reason, written_at FROM ticket_end_outbox \
     ORDER BY written_at, ticket LIMIT $1";

/// Only the row as read: a newer payment of the same number may have replaced it since.
const DONE: &str = "DELETE FROM ticket_end_outbox \
     WHERE ticket = $1 AND payer = $2 AND written_at = $3";

#[async_trait]
impl TicketEndOutbox for PgTicketEndOutbox {
    async fn pending(&self, limit: u32) -> Result<Vec<PendingTicketEnd>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let rows: Vec<Row> = diesel::sql_query(PENDING)
                    .bind::<BigInt, _>(i64::from(limit))
                    .cached()
                    .load(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                rows.into_iter().map(Row::into_domain).collect()
            })
            .await
    }

    async fn done(&self, end: &PendingTicketEnd) -> Result<(), RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                diesel::sql_query(DONE)
                    .bind::<BigInt, _>(end.end.ticket.get())
                    .bind::<SqlUuid, _>(end.payer.get())
                    .bind::<Timestamptz, _>(end.written_at)
                    .cached()
                    .execute(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                Ok(())
            })
            .await
    }
}
