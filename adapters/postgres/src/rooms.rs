//! `RoomRepository`: waiting rooms' settings in PostgreSQL. A change is one compare-and-set
//! `UPDATE` over the version read; the domain decided it.

use async_trait::async_trait;
use concert_application::ports::{RepositoryError, RoomRepository, Versioned, Written};
use concert_domain::{Room, RoomId, RoomState, WaitingIdle};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use time::{Duration, OffsetDateTime};

use crate::cached::CachedExt;
use crate::columns::version;
use crate::error::{corrupt, from_diesel};
use crate::pool::PgPool;

#[derive(Debug, Clone)]
pub struct PgRoomRepository {
    pool: PgPool,
}

impl PgRoomRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(QueryableByName)]
struct RoomRow {
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(sql_type = Integer)]
    max_active: i32,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Integer>)]
    admit_per_minute: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    waiting_idle_seconds: Option<i32>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    waiting_idle_since: Option<OffsetDateTime>,
    #[diesel(sql_type = BigInt)]
    version: i64,
}

impl RoomRow {
    fn into_domain(self) -> Result<Versioned<Room>, RepositoryError> {
        let room = Room::new(
            RoomId::parse(&self.room_id).map_err(corrupt)?,
            u32::try_from(self.max_active).map_err(corrupt)?,
            RoomState::parse(&self.state).map_err(corrupt)?,
        )
        .and_then(|room| {
            room.with_admit_per_minute(self.admit_per_minute.and_then(|n| u32::try_from(n).ok()))
        })
        .and_then(|room| {
            room.with_waiting_idle(self.waiting_idle_seconds.zip(self.waiting_idle_since).map(
                |(seconds, since)| WaitingIdle {
                    after: Duration::seconds(i64::from(seconds)),
                    since,
                },
            ))
        })
        .map_err(corrupt)?;
        Ok(Versioned::new(room, version(self.version)?))
    }
}

fn max_active(room: &Room) -> i32 {
    i32::try_from(room.max_active()).unwrap_or(i32::MAX)
}

#[async_trait]
impl RoomRepository for PgRoomRepository {
    async fn find(&self, room: &RoomId) -> Result<Option<Versioned<Room>>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: Option<RoomRow> = diesel::sql_query(
                    "SELECT room_id, max_active, state, admit_per_minute, waiting_idle_seconds, \
                            waiting_idle_since, version \
                     FROM rooms WHERE room_id = $1",
                )
                .bind::<Text, _>(room.as_str())
                .cached()
                .get_result(&mut conn)
                .await
                .optional()
                .map_err(from_diesel)?;
                row.map(RoomRow::into_domain).transpose()
            })
            .await
    }

    async fn save(&self, room: &Versioned<Room>) -> Result<Written<()>, RepositoryError> {
        let waiting_idle = room.value.waiting_idle();
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let written = diesel::sql_query(
                    "UPDATE rooms SET max_active = $2, state = $3, admit_per_minute = $5, \
                                      waiting_idle_seconds = $6, waiting_idle_since = $7, \
                                      version = version + 1, updated_at = now() \
                     WHERE room_id = $1 AND version = $4",
                )
                .bind::<Text, _>(room.value.id().as_str())
                .bind::<Integer, _>(max_active(&room.value))
                .bind::<Text, _>(room.value.state().as_str())
                .bind::<BigInt, _>(room.version.get())
                .bind::<Nullable<Integer>, _>(
                    room.value
                        .admit_per_minute()
                        .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                )
                .bind::<Nullable<Integer>, _>(
                    waiting_idle
                        .map(|idle| i32::try_from(idle.after.whole_seconds()).unwrap_or(i32::MAX)),
                )
                .bind::<Nullable<Timestamptz>, _>(waiting_idle.map(|idle| idle.since))
                .cached()
                .execute(&mut conn)
                .await
                .map_err(from_diesel)?;
                Ok(if written == 1 {
                    Written::Done(())
                } else {
                    Written::Stale
                })
            })
            .await
    }

    async fn create_if_absent(&self, room: &Room) -> Result<(), RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                diesel::sql_query(
                    "INSERT INTO rooms (room_id, max_active, state) VALUES ($1, $2, $3) \
                     ON CONFLICT (room_id) DO NOTHING",
                )
                .bind::<Text, _>(room.id().as_str())
                .bind::<Integer, _>(max_active(room))
                .bind::<Text, _>(room.state().as_str())
                .cached()
                .execute(&mut conn)
                .await
                .map_err(from_diesel)?;
                Ok(())
            })
            .await
    }
}
