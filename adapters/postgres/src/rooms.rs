//! `RoomRepository`: waiting rooms' settings in PostgreSQL. A change is one compare-and-set
//! `UPDATE` over the version read; a new room is one transaction that takes its id and its
//! concerts (their keys refuse a room created meanwhile) and lays out its empty line. The domain
//! decided both.

use std::sync::LazyLock;

use async_trait::async_trait;
use concert_application::ports::{RepositoryError, RoomRepository, Versioned, Written};
use concert_domain::{
    ConcertGuard, ConcertId, LineNo, Opening, Room, RoomId, RoomState, WaitingIdle,
};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::{Duration, OffsetDateTime};

use crate::cached::CachedExt;
use crate::columns::version;
use crate::error::{corrupt, from_diesel};
use crate::pool::PgPool;
use crate::queue::{line_key, line_sequence};

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
    line: i32,
    #[diesel(sql_type = Array<BigInt>)]
    concerts: Vec<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    opens_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Bool)]
    shuffle_at_open: bool,
    #[diesel(sql_type = Bool)]
    opened: bool,
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
        let concerts = self
            .concerts
            .into_iter()
            .map(ConcertId::new)
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;
        let room = room
            .on_line(LineNo::new(i64::from(self.line)).map_err(corrupt)?)
            .guarding(concerts)
            .with_opening(self.opens_at.map(|at| Opening {
                at,
                shuffle: self.shuffle_at_open,
                done: self.opened,
            }));
        Ok(Versioned::new(room, version(self.version)?))
    }
}

/// A room's columns with the concerts it names, for `WHERE` clauses on `r`.
static SELECT_ROOMS: LazyLock<String> = LazyLock::new(|| {
    "SELECT r.room_id, r.line, r.max_active, r.state, r.admit_per_minute, \
            r.waiting_idle_seconds, r.waiting_idle_since, r.version, r.opens_at, \
            r.shuffle_at_open, r.opened, \
            ARRAY(SELECT c.concert_id FROM room_concerts c WHERE c.room_id = r.room_id \
                  ORDER BY c.concert_id) AS concerts \
     FROM rooms r"
        .to_owned()
});

/// Why a room's creation rolled back.
enum CreateAbort {
    /// Its id or one of its concerts was taken since the decision read them.
    Taken,
    Db(DieselError),
}

impl From<DieselError> for CreateAbort {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => Self::Taken,
            other => Self::Db(other),
        }
    }
}

/// Writes a new room, its concerts, its line's counters and its line's sequence (numbers from
/// the line's start), in the caller's transaction.
async fn create_in_transaction(
    conn: &mut AsyncPgConnection,
    room: &Room,
) -> Result<Room, CreateAbort> {
    #[derive(QueryableByName)]
    struct Numbered {
        #[diesel(sql_type = Integer)]
        line: i32,
    }
    let waiting_idle = room.waiting_idle();
    let opening = room.opening();
    let numbered: Option<Numbered> = diesel::sql_query(
        "INSERT INTO rooms (room_id, line, max_active, state, admit_per_minute, \
                            waiting_idle_seconds, waiting_idle_since, opens_at, shuffle_at_open) \
         VALUES ($1, nextval('room_lines_seq'), $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (room_id) DO NOTHING RETURNING line",
    )
    .bind::<Text, _>(room.id().as_str())
    .bind::<Integer, _>(max_active(room))
    .bind::<Text, _>(room.state().as_str())
    .bind::<Nullable<Integer>, _>(admit_per_minute(room))
    .bind::<Nullable<Integer>, _>(waiting_idle.map(|idle| seconds(idle.after)))
    .bind::<Nullable<Timestamptz>, _>(waiting_idle.map(|idle| idle.since))
    .bind::<Nullable<Timestamptz>, _>(opening.map(|opening| opening.at))
    .bind::<Bool, _>(opening.is_some_and(|opening| opening.shuffle))
    .get_result(conn)
    .await
    .optional()?;
    let Some(numbered) = numbered else {
        return Err(CreateAbort::Taken);
    };
    let line = LineNo::new(i64::from(numbered.line))
        .map_err(|error| CreateAbort::Db(DieselError::DeserializationError(Box::new(error))))?;
    let concerts: Vec<i64> = room
        .concerts()
        .iter()
        .map(|concert| concert.get())
        .collect();
    // A concert another room took meanwhile breaks the key: the whole creation rolls back.
    diesel::sql_query(
        "INSERT INTO room_concerts (concert_id, room_id) SELECT unnest($1::bigint[]), $2",
    )
    .bind::<Array<BigInt>, _>(&concerts)
    .bind::<Text, _>(room.id().as_str())
    .execute(conn)
    .await?;
    // Places fill the lower half of the line's range; the upper half numbers its pre-queue.
    let (start, last_place) = (line.start().get(), line.pre_queue_start());
    diesel::sql_query("INSERT INTO queue_state (line, serving, issued_hwm) VALUES ($1, $2, $2)")
        .bind::<Integer, _>(line_key(line))
        .bind::<BigInt, _>(start)
        .execute(conn)
        .await?;
    // DDL takes no parameters; every part of it is a number this code formatted.
    diesel::sql_query(format!(
        "CREATE SEQUENCE {} MINVALUE {} MAXVALUE {} START {}",
        line_sequence(line),
        start + 1,
        last_place,
        start + 1
    ))
    .execute(conn)
    .await?;
    Ok(room.clone().on_line(line))
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.whole_seconds()).unwrap_or(i32::MAX)
}

fn admit_per_minute(room: &Room) -> Option<i32> {
    room.admit_per_minute()
        .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
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
                let row: Option<RoomRow> =
                    diesel::sql_query(format!("{} WHERE r.room_id = $1", *SELECT_ROOMS))
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
                .bind::<Nullable<Integer>, _>(admit_per_minute(&room.value))
                .bind::<Nullable<Integer>, _>(waiting_idle.map(|idle| seconds(idle.after)))
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
                    "INSERT INTO rooms (room_id, line, max_active, state) VALUES ($1, $4, $2, $3) \
                     ON CONFLICT (room_id) DO NOTHING",
                )
                .bind::<Text, _>(room.id().as_str())
                .bind::<Integer, _>(max_active(room))
                .bind::<Text, _>(room.state().as_str())
                .bind::<Integer, _>(line_key(room.line()))
                .cached()
                .execute(&mut conn)
                .await
                .map_err(from_diesel)?;
                Ok(())
            })
            .await
    }

    async fn list(&self) -> Result<Vec<Versioned<Room>>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let rows: Vec<RoomRow> =
                    diesel::sql_query(format!("{} ORDER BY r.line", *SELECT_ROOMS))
                        .cached()
                        .load(&mut conn)
                        .await
                        .map_err(from_diesel)?;
                rows.into_iter().map(RoomRow::into_domain).collect()
            })
            .await
    }

    async fn guards_of(
        &self,
        concerts: &[ConcertId],
    ) -> Result<Vec<(ConcertId, ConcertGuard)>, RepositoryError> {
        #[derive(QueryableByName)]
        struct GuardRow {
            #[diesel(sql_type = BigInt)]
            concert_id: i64,
            #[diesel(sql_type = Nullable<Text>)]
            room_id: Option<String>,
        }
        let ids: Vec<i64> = concerts.iter().map(|concert| concert.get()).collect();
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                // Only concerts that exist come back; the others are missing.
                let rows: Vec<GuardRow> = diesel::sql_query(
                    "SELECT c.id AS concert_id, rc.room_id FROM concerts c \
                     LEFT JOIN room_concerts rc ON rc.concert_id = c.id \
                     WHERE c.id = ANY($1)",
                )
                .bind::<Array<BigInt>, _>(&ids)
                .cached()
                .load(&mut conn)
                .await
                .map_err(from_diesel)?;
                concerts
                    .iter()
                    .map(|concert| {
                        let guard = match rows.iter().find(|row| row.concert_id == concert.get()) {
                            None => ConcertGuard::Missing,
                            Some(GuardRow { room_id: None, .. }) => ConcertGuard::DefaultRoom,
                            Some(GuardRow {
                                room_id: Some(room),
                                ..
                            }) => ConcertGuard::Room(RoomId::parse(room).map_err(corrupt)?),
                        };
                        Ok((*concert, guard))
                    })
                    .collect()
            })
            .await
    }

    async fn create(&self, room: &Room) -> Result<Written<Room>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let created = conn
                    .transaction::<_, CreateAbort, _>(async |conn| {
                        create_in_transaction(conn, room).await
                    })
                    .await;
                match created {
                    Ok(room) => Ok(Written::Done(room)),
                    Err(CreateAbort::Taken) => Ok(Written::Stale),
                    Err(CreateAbort::Db(error)) => Err(from_diesel(error)),
                }
            })
            .await
    }
}
