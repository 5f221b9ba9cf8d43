//! `TicketBlockLeases`: blocks of ticket numbers for a line kept in another store, leased for
//! good in `ticket_blocks` (one row per block handed out).
//!
//! - The block after a given one is the same for every caller: the insert ignores a row that
//!   exists, and the answer is the block asked for whether this call inserted it or not.
//! - A block after every block leased so far is the line's highest block plus one, inserted in
//!   one statement; two such calls at once may compute the same block, and the one whose insert
//!   found the row taken asks again (each call still gets a block nobody drew from before it).

use async_trait::async_trait;
use concert_application::ports::{RepositoryError, TicketBlock, TicketBlockLeases};
use concert_domain::LineNo;
use diesel::QueryableByName;
use diesel::sql_types::Integer;
use diesel_async::RunQueryDsl;

use crate::cached::CachedExt;
use crate::committed::committed_row;
use crate::error::{corrupt, from_diesel};
use crate::pool::PgPool;
use crate::queue::line_key;

#[derive(Debug, Clone)]
pub struct PgTicketBlockLeases {
    pool: PgPool,
}

impl PgTicketBlockLeases {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// How many times a lease of a new block asks again after losing its block to another lease.
const NEW_BLOCK_ATTEMPTS: usize = 8;

#[derive(QueryableByName)]
struct Leased {
    #[diesel(sql_type = Integer)]
    block: i32,
}

fn block_of(line: LineNo, index: u32) -> Result<TicketBlock, RepositoryError> {
    let (first, last) = line.ticket_block(index).ok_or_else(|| {
        corrupt(format!(
            "line {line} has no block {index}: its numbers ran out"
        ))
    })?;
    Ok(TicketBlock { index, first, last })
}

#[async_trait]
impl TicketBlockLeases for PgTicketBlockLeases {
    async fn lease(
        &self,
        line: LineNo,
        after: Option<u32>,
    ) -> Result<TicketBlock, RepositoryError> {
        if let Some(index) = after {
            let next = index
                .checked_add(1)
                .ok_or_else(|| corrupt("no block after the last"))?;
            let block = block_of(line, next)?;
            let row = i32::try_from(next).map_err(corrupt)?;
            self.pool
                .run(async {
                    let mut conn = self.pool.get().await?;
                    diesel::sql_query(
                        "INSERT INTO ticket_blocks (line, block) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind::<Integer, _>(line_key(line))
                    .bind::<Integer, _>(row)
                    .cached()
                    .execute(&mut conn)
                    .await
                    .map_err(from_diesel)
                })
                .await?;
            return Ok(block);
        }
        for _ in 0..NEW_BLOCK_ATTEMPTS {
            let leased: Option<Leased> = self
                .pool
                .run(async {
                    let mut conn = self.pool.get().await?;
                    diesel::sql_query(
                        "INSERT INTO ticket_blocks (line, block) \
                         SELECT $1, COALESCE(max(block) + 1, 0) FROM ticket_blocks \
                         WHERE line = $1 \
                         ON CONFLICT DO NOTHING RETURNING block",
                    )
                    .bind::<Integer, _>(line_key(line))
                    .cached()
                    .load(&mut conn)
                    .await
                    .map(committed_row)
                    .map_err(from_diesel)
                })
                .await?;
            if let Some(leased) = leased {
                return block_of(line, u32::try_from(leased.block).map_err(corrupt)?);
            }
        }
        Err(RepositoryError::Unavailable(
            "new ticket blocks kept being taken by other leases".into(),
        ))
    }
}
