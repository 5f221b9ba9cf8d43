//! The ports' contract for the waiting line (`concert_contract::line_contract_tests!`) on a
//! mixed store, as a deployment with `QUEUE_URL` runs: the line on Redis, the catalog, bookings,
//! money and the rooms' settings on PostgreSQL (rooms seen through `RedisLine::rooms_over`).
//! The line's hooks read the Redis keys directly; the hooks of bookings and money are not used
//! by the line's contract and panic.

use std::sync::Arc;

use async_trait::async_trait;
use concert_application::ports::{
    CatalogRepository, IdempotencyStore, PaymentRepository, QueueRepository, ReadinessProbe,
    ReservationRepository, RetentionRepository, RoomRepository, WalletRepository,
};
use concert_contract::{
    BookingCounts, LineFigures, RACERS, RoomCounts, RowTimes, Store, StoredKey, StoredPayment,
};
use concert_domain::{
    IdempotencyKey, IdempotencyScope, LineNo, Reservation, ReservationId, SeatClaim, SeatRef,
    TicketNo, UserId,
};
use concert_postgres::testing::TestDatabase;
use concert_postgres::{
    PgCatalogRepository, PgIdempotencyStore, PgPaymentRepository, PgPool, PgReservationRepository,
    PgRetentionRepository, PgRoomRepository, PgTicketBlockLeases, PgWalletRepository,
};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use redis::AsyncCommands;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::support::FreshLine;

/// PostgreSQL allows 100 connections; each test reserves its pool from this budget first
/// (other test binaries may run at the same time).
static CONNECTIONS: Semaphore = Semaphore::const_new(48);

/// The line on Redis (a fresh prefix), the rest on a fresh PostgreSQL database.
pub struct LineStore {
    fresh: FreshLine,
    db: TestDatabase,
    pool: PgPool,
    _budget: SemaphorePermit<'static>,
}

fn unused(hook: &str) -> ! {
    panic!("`{hook}` is a hook of bookings and money: the line's contract does not use it")
}

impl LineStore {
    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.fresh.raw().await
    }

    /// One ticket's field.
    async fn ticket_field(&self, ticket: TicketNo, field: &str) -> Option<String> {
        let line = ticket.line();
        let place = ticket.get() - line.start().get();
        let key = format!("{}t:{place}", self.fresh.base(line.get()));
        self.conn()
            .await
            .hget(key, field)
            .await
            .expect("a ticket's field")
    }

    /// The `rooms` rows, as text.
    async fn rooms_dump(&self) -> String {
        use diesel_async::RunQueryDsl;
        #[derive(QueryableByName)]
        struct Dump {
            #[diesel(sql_type = Text)]
            dump: String,
        }
        let mut conn = self.pool.get().await.expect("a pooled connection");
        diesel::sql_query(
            "SELECT coalesce(string_agg(r::text, ';' ORDER BY r.room_id), '') AS dump FROM rooms r",
        )
        .get_result::<Dump>(&mut conn)
        .await
        .expect("dump")
        .dump
    }
}

fn instant(raw: &str) -> OffsetDateTime {
    let micros: i64 = raw.parse().expect("microseconds");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).expect("an instant")
}

/// `prefix{line:N}:t:P` as (N, P).
fn ticket_key(prefix: &str, key: &str) -> Option<(u32, i64)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix("{line:")?;
    let (line, rest) = rest.split_once("}:")?;
    let place = rest.strip_prefix("t:")?;
    Some((line.parse().ok()?, place.parse().ok()?))
}

/// The `default` line's figures in one script: one consistent state.
const FIGURES: &str = r"
local base = KEYS[1]
local next = tonumber(redis.call('GET', base .. 'next') or '0')
local active, waiting, admitted, highest = 0, 0, 0, 0
local waiting_places = {}
for place = 1, next do
  local f = redis.call('HMGET', base .. 't:' .. place, 'status', 'admitted')
  if f[1] == 'ACTIVE' then active = active + 1 end
  if f[1] == 'WAITING' then waiting = waiting + 1; waiting_places[#waiting_places + 1] = place end
  if f[2] then admitted = admitted + 1; if place > highest then highest = place end end
end
local passed = 0
for _, place in ipairs(waiting_places) do if place < highest then passed = passed + 1 end end
local s = redis.call('HMGET', base .. 'state', 'serving', 'admitted_total')
return {active, passed, admitted, highest, waiting, tonumber(s[1] or '0'),
        tonumber(s[2] or '0'), redis.call('ZCARD', base .. 'waiting')}
";

#[async_trait]
impl Store for LineStore {
    /// Steps and openings hold the line against joins only; ends, activity and polls go
    /// through meanwhile and make a step `Stale`, as on PostgreSQL.
    const ONE_WRITER: bool = false;

    async fn fresh() -> Self {
        let connections = u32::try_from(RACERS).expect("a few racers") + 2;
        let budget = CONNECTIONS
            .acquire_many(connections)
            .await
            .expect("the budget semaphore is never closed");
        let db = TestDatabase::create().await.expect("a fresh test database");
        let pool = db.pool(connections as usize);
        // The line leases its blocks of numbers in the database, as a deployment does.
        let blocks = Arc::new(PgTicketBlockLeases::new(pool.clone()));
        Self {
            fresh: FreshLine::new(blocks).await,
            db,
            pool,
            _budget: budget,
        }
    }

    fn catalog(&self) -> Arc<dyn CatalogRepository> {
        Arc::new(PgCatalogRepository::new(self.pool.clone()))
    }
    fn reservations(&self) -> Arc<dyn ReservationRepository> {
        Arc::new(PgReservationRepository::new(self.pool.clone()))
    }
    fn wallets(&self) -> Arc<dyn WalletRepository> {
        Arc::new(PgWalletRepository::new(self.pool.clone()))
    }
    fn payments(&self) -> Arc<dyn PaymentRepository> {
        Arc::new(PgPaymentRepository::new(self.pool.clone()))
    }
    fn idempotency(&self) -> Arc<dyn IdempotencyStore> {
        Arc::new(PgIdempotencyStore::new(self.pool.clone()))
    }
    fn queue(&self) -> Arc<dyn QueueRepository> {
        Arc::new(self.fresh.line.queue())
    }
    fn rooms(&self) -> Arc<dyn RoomRepository> {
        Arc::new(
            self.fresh
                .line
                .rooms_over(Arc::new(PgRoomRepository::new(self.pool.clone()))),
        )
    }
    fn retention(&self) -> Arc<dyn RetentionRepository> {
        Arc::new(
            self.fresh
                .line
                .retention_over(Arc::new(PgRetentionRepository::new(self.pool.clone()))),
        )
    }
    fn readiness(&self) -> Arc<dyn ReadinessProbe> {
        Arc::new(self.fresh.line.readiness())
    }

    async fn finish(self) {
        let Self {
            fresh, db, pool, ..
        } = self;
        drop(pool);
        fresh.keys.delete().await;
        db.drop_database().await.expect("drop the test database");
    }

    // ---- Catalog, rooms, bookings and money: not the line's. ----

    async fn catalog_counts(&self) -> (u64, u64) {
        unused("catalog_counts")
    }
    async fn clear_bookings(&self) {
        unused("clear_bookings")
    }
    async fn insert_reservation(&self, _reservation: &Reservation, _at: OffsetDateTime) {
        unused("insert_reservation")
    }
    async fn set_claim(&self, _seat: SeatRef, _claim: SeatClaim) {
        unused("set_claim")
    }
    async fn room_rows(&self) -> String {
        unused("room_rows")
    }
    async fn room_counts(&self) -> RoomCounts {
        unused("room_counts")
    }
    async fn booking_rows(&self) -> String {
        unused("booking_rows")
    }
    async fn booking_counts(&self) -> BookingCounts {
        unused("booking_counts")
    }
    async fn bump_seat(&self, _seat: SeatRef) {
        unused("bump_seat")
    }
    async fn bump_reservation(&self, _reservation: ReservationId) {
        unused("bump_reservation")
    }
    async fn bump_wallet(&self, _user: UserId) {
        unused("bump_wallet")
    }
    async fn reservation_times(&self, _reservation: ReservationId) -> Option<RowTimes> {
        unused("reservation_times")
    }
    async fn stored_payment(&self, _payment: concert_domain::PaymentId) -> Option<StoredPayment> {
        unused("stored_payment")
    }
    async fn stored_key(
        &self,
        _user: UserId,
        _scope: IdempotencyScope,
        _key: &IdempotencyKey,
    ) -> Option<StoredKey> {
        unused("stored_key")
    }

    // ---- The line, read from its keys. ----

    async fn set_serving(&self, line: LineNo, serving: TicketNo) {
        let place = serving.get() - line.start().get();
        let key = format!("{}state", self.fresh.base(line.get()));
        self.conn()
            .await
            .hset::<_, _, _, ()>(key, "serving", place.to_string())
            .await
            .expect("set serving");
    }

    async fn ticket_ended_at(&self, ticket: TicketNo) -> Option<OffsetDateTime> {
        self.ticket_field(ticket, "ended")
            .await
            .map(|raw| instant(&raw))
    }

    /// Every key of every line (the hold, a lock rather than data, left out: PostgreSQL's dump
    /// shows no advisory lock either), each with its whole value, and the rooms' rows.
    async fn line_rows(&self) -> String {
        let mut conn = self.conn().await;
        let mut dump = Vec::new();
        for key in self.fresh.all_keys().await {
            if !key.contains("{line:") || key.ends_with(":hold") {
                continue;
            }
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("type");
            let value = match kind.as_str() {
                "string" => conn.get::<_, String>(&key).await.expect("get"),
                "hash" => {
                    let mut fields: Vec<(String, String)> =
                        conn.hgetall(&key).await.expect("hgetall");
                    fields.sort();
                    format!("{fields:?}")
                }
                "zset" => {
                    let members: Vec<(String, String)> = redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query_async(&mut conn)
                        .await
                        .expect("zrange");
                    format!("{members:?}")
                }
                "set" => {
                    let mut members: Vec<String> = conn.smembers(&key).await.expect("smembers");
                    members.sort();
                    format!("{members:?}")
                }
                other => panic!("a line key of type {other}: {key}"),
            };
            dump.push(format!("{key}={value}"));
        }
        format!("{}|{}", dump.join(";"), self.rooms_dump().await)
    }

    async fn ticket_numbers(&self) -> Vec<TicketNo> {
        let mut numbers: Vec<TicketNo> = self
            .fresh
            .all_keys()
            .await
            .iter()
            .filter_map(|key| ticket_key(self.fresh.keys.prefix(), key))
            .map(|(line, place)| {
                let line = LineNo::new(i64::from(line)).expect("a line");
                TicketNo::new(line.start().get() + place).expect("a ticket")
            })
            .collect();
        numbers.sort_unstable();
        numbers
    }

    async fn admitted_at(&self, ticket: TicketNo) -> Option<OffsetDateTime> {
        self.ticket_field(ticket, "admitted")
            .await
            .map(|raw| instant(&raw))
    }

    async fn line_figures(&self) -> LineFigures {
        let figures: Vec<i64> = redis::Script::new(FIGURES)
            .key(self.fresh.base(0))
            .invoke_async(&mut self.conn().await)
            .await
            .expect("the line's figures");
        let [
            active,
            passed,
            admitted,
            highest_admitted,
            waiting,
            serving,
            admitted_total,
            counted_waiting,
        ] = figures[..]
        else {
            panic!("figures of another shape: {figures:?}")
        };
        LineFigures {
            active,
            passed,
            admitted,
            highest_admitted,
            waiting,
            serving,
            admitted_total,
            counted_waiting,
        }
    }
}

concert_contract::line_contract_tests!(LineStore);
