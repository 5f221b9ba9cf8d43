//! `RoomRepository`: waiting rooms' settings. A change is one compare-and-set `UPDATE` over the
//! version read; a new room is one transaction that takes its id and its concerts (their keys
//! refuse a room created meanwhile), draws its line number and lays out its empty line. The
//! domain decided both.

use async_trait::async_trait;
use concert_application::ports::{RepositoryError, RoomRepository, Version, Versioned, Written};
use concert_domain::{
    ConcertGuard, ConcertId, LineNo, Opening, Room, RoomId, RoomState, WaitingIdle,
};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel::{Connection, OptionalExtension, QueryableByName, RunQueryDsl, SqliteConnection};
use time::{Duration, OffsetDateTime};

use crate::columns::{instant, instant_opt, micros};
use crate::counters;
use crate::error::{corrupt, from_diesel};
use crate::store::SqliteStore;

/// The `counters` row new rooms' lines are drawn from (PostgreSQL's `room_lines_seq`): the first
/// room after `default` (line 0) gets line 1.
const ROOM_LINES: &str = "room_lines";

#[derive(Debug, Clone)]
pub struct SqliteRoomRepository {
    store: SqliteStore,
}

impl SqliteRoomRepository {
    pub fn new(store: SqliteStore) -> Self {
        Self { store }
    }
}

#[derive(QueryableByName)]
struct RoomRow {
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(sql_type = BigInt)]
    line: i64,
    /// The concert ids it names, comma-separated (`NULL` when none).
    #[diesel(sql_type = Nullable<Text>)]
    concerts: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    opens_at: Option<i64>,
    #[diesel(sql_type = Bool)]
    shuffle_at_open: bool,
    #[diesel(sql_type = Bool)]
    opened: bool,
    #[diesel(sql_type = BigInt)]
    max_active: i64,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    admit_per_minute: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    waiting_idle_seconds: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    waiting_idle_since: Option<i64>,
    #[diesel(sql_type = BigInt)]
    version: i64,
}

impl RoomRow {
    fn into_domain(self) -> Result<Versioned<Room>, RepositoryError> {
        let waiting_idle = match (self.waiting_idle_seconds, self.waiting_idle_since) {
            (Some(seconds), Some(since)) => Some(WaitingIdle {
                after: Duration::seconds(seconds),
                since: instant(since)?,
            }),
            _ => None,
        };
        let room = Room::new(
            RoomId::parse(&self.room_id).map_err(corrupt)?,
            u32::try_from(self.max_active).map_err(corrupt)?,
            RoomState::parse(&self.state).map_err(corrupt)?,
        )
        .and_then(|room| {
            room.with_admit_per_minute(self.admit_per_minute.and_then(|n| u32::try_from(n).ok()))
        })
        .and_then(|room| room.with_waiting_idle(waiting_idle))
        .map_err(corrupt)?;
        let concerts = self
            .concerts
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|id| !id.is_empty())
            .map(|id| {
                id.parse::<i64>()
                    .map_err(corrupt)
                    .and_then(|id| ConcertId::new(id).map_err(corrupt))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let opening = instant_opt(self.opens_at)?.map(|at| Opening {
            at,
            shuffle: self.shuffle_at_open,
            done: self.opened,
        });
        let room = room
            .on_line(LineNo::new(self.line).map_err(corrupt)?)
            .guarding(concerts)
            .with_opening(opening);
        if self.version <= 0 {
            return Err(corrupt(format!("row version {}", self.version)));
        }
        Ok(Versioned::new(room, Version::new(self.version)))
    }
}

/// A room's columns with the concerts it names, for `WHERE` clauses on `r`.
const SELECT_ROOMS: &str = "SELECT r.room_id, r.line, r.max_active, r.state, r.admit_per_minute, \
            r.waiting_idle_seconds, r.waiting_idle_since, r.version, r.opens_at, \
            r.shuffle_at_open, r.opened, \
            (SELECT group_concat(c.concert_id, ',') FROM room_concerts c \
             WHERE c.room_id = r.room_id) AS concerts \
     FROM rooms r";

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

/// The room's settings as bound by `create`, taken out of the domain value so the write
/// closure owns them.
struct NewRow {
    room_id: String,
    max_active: i32,
    state: &'static str,
    admit_per_minute: Option<i32>,
    waiting_idle_seconds: Option<i32>,
    waiting_idle_since: Option<i64>,
    opens_at: Option<i64>,
    shuffle_at_open: bool,
    concerts: String,
    updated_at: i64,
}

/// Writes a new room, its concerts and its line's counters (numbers from the line's start), in
/// the caller's transaction; returns the line drawn.
fn create_in_transaction(conn: &mut SqliteConnection, row: &NewRow) -> Result<LineNo, CreateAbort> {
    #[derive(QueryableByName)]
    struct Numbered {
        #[diesel(sql_type = BigInt)]
        line: i64,
    }
    let drawn = counters::draw(conn, ROOM_LINES)?;
    let numbered: Option<Numbered> = diesel::sql_query(
        "INSERT INTO rooms (room_id, line, max_active, state, admit_per_minute, \
                            waiting_idle_seconds, waiting_idle_since, opens_at, shuffle_at_open, \
                            updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (room_id) DO NOTHING RETURNING line",
    )
    .bind::<Text, _>(&row.room_id)
    .bind::<BigInt, _>(drawn)
    .bind::<Integer, _>(row.max_active)
    .bind::<Text, _>(row.state)
    .bind::<Nullable<Integer>, _>(row.admit_per_minute)
    .bind::<Nullable<Integer>, _>(row.waiting_idle_seconds)
    .bind::<Nullable<BigInt>, _>(row.waiting_idle_since)
    .bind::<Nullable<BigInt>, _>(row.opens_at)
    .bind::<Bool, _>(row.shuffle_at_open)
    .bind::<BigInt, _>(row.updated_at)
    .get_result(conn)
    .optional()?;
    let Some(numbered) = numbered else {
        return Err(CreateAbort::Taken);
    };
    let line = LineNo::new(numbered.line)
        .map_err(|error| CreateAbort::Db(DieselError::DeserializationError(Box::new(error))))?;
    // A concert another room took meanwhile breaks the key: the whole creation rolls back.
    diesel::sql_query(
        "INSERT INTO room_concerts (concert_id, room_id) SELECT value, ?2 FROM json_each(?1)",
    )
    .bind::<Text, _>(&row.concerts)
    .bind::<Text, _>(&row.room_id)
    .execute(conn)?;
    // Places fill the lower half of the line's range; the upper half numbers its pre-queue.
    diesel::sql_query("INSERT INTO queue_state (line, serving, issued_hwm) VALUES (?1, ?2, ?2)")
        .bind::<BigInt, _>(i64::from(line.get()))
        .bind::<BigInt, _>(line.start().get())
        .execute(conn)?;
    Ok(line)
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

/// Ids as a JSON array, for `json_each`.
fn id_array(ids: impl IntoIterator<Item = ConcertId>) -> String {
    let ids: Vec<String> = ids.into_iter().map(|id| id.get().to_string()).collect();
    format!("[{}]", ids.join(","))
}

#[async_trait]
impl RoomRepository for SqliteRoomRepository {
    async fn find(&self, room: &RoomId) -> Result<Option<Versioned<Room>>, RepositoryError> {
        let id = room.as_str().to_owned();
        let row: Option<RoomRow> = self
            .store
            .read(move |conn| {
                diesel::sql_query(format!("{SELECT_ROOMS} WHERE r.room_id = ?1"))
                    .bind::<Text, _>(id)
                    .get_result(conn)
                    .optional()
                    .map_err(from_diesel)
            })
            .await?;
        row.map(RoomRow::into_domain).transpose()
    }

    async fn save(&self, room: &Versioned<Room>) -> Result<Written<()>, RepositoryError> {
        let waiting_idle = room.value.waiting_idle();
        let id = room.value.id().as_str().to_owned();
        let max_active = max_active(&room.value);
        let state = room.value.state().as_str();
        let version = room.version.get();
        let admit_per_minute = admit_per_minute(&room.value);
        let idle_seconds = waiting_idle.map(|idle| seconds(idle.after));
        let idle_since = waiting_idle.map(|idle| micros(idle.since));
        let now = micros(OffsetDateTime::now_utc());
        let written = self
            .store
            .write(move |conn| {
                diesel::sql_query(
                    "UPDATE rooms SET max_active = ?2, state = ?3, admit_per_minute = ?5, \
                                      waiting_idle_seconds = ?6, waiting_idle_since = ?7, \
                                      version = version + 1, updated_at = ?8 \
                     WHERE room_id = ?1 AND version = ?4",
                )
                .bind::<Text, _>(id)
                .bind::<Integer, _>(max_active)
                .bind::<Text, _>(state)
                .bind::<BigInt, _>(version)
                .bind::<Nullable<Integer>, _>(admit_per_minute)
                .bind::<Nullable<Integer>, _>(idle_seconds)
                .bind::<Nullable<BigInt>, _>(idle_since)
                .bind::<BigInt, _>(now)
                .execute(conn)
                .map_err(from_diesel)
            })
            .await?;
        Ok(if written == 1 {
            Written::Done(())
        } else {
            Written::Stale
        })
    }

    async fn create_if_absent(&self, room: &Room) -> Result<(), RepositoryError> {
        let id = room.id().as_str().to_owned();
        let max_active = max_active(room);
        let state = room.state().as_str();
        let line = i64::from(room.line().get());
        let now = micros(OffsetDateTime::now_utc());
        self.store
            .write(move |conn| {
                diesel::sql_query(
                    "INSERT INTO rooms (room_id, line, max_active, state, updated_at) \
                     VALUES (?1, ?4, ?2, ?3, ?5) ON CONFLICT (room_id) DO NOTHING",
                )
                .bind::<Text, _>(id)
                .bind::<Integer, _>(max_active)
                .bind::<Text, _>(state)
                .bind::<BigInt, _>(line)
                .bind::<BigInt, _>(now)
                .execute(conn)
                .map_err(from_diesel)?;
                Ok(())
            })
            .await
    }

    async fn list(&self) -> Result<Vec<Versioned<Room>>, RepositoryError> {
        let rows: Vec<RoomRow> = self
            .store
            .read(|conn| {
                diesel::sql_query(format!("{SELECT_ROOMS} ORDER BY r.line"))
                    .load(conn)
                    .map_err(from_diesel)
            })
            .await?;
        rows.into_iter().map(RoomRow::into_domain).collect()
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
        let ids = id_array(concerts.iter().copied());
        // Only concerts that exist come back; the others are missing.
        let rows: Vec<GuardRow> = self
            .store
            .read(move |conn| {
                diesel::sql_query(
                    "SELECT c.id AS concert_id, rc.room_id FROM concerts c \
                     LEFT JOIN room_concerts rc ON rc.concert_id = c.id \
                     WHERE c.id IN (SELECT value FROM json_each(?1))",
                )
                .bind::<Text, _>(ids)
                .load(conn)
                .map_err(from_diesel)
            })
            .await?;
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
    }

    async fn create(&self, room: &Room) -> Result<Written<Room>, RepositoryError> {
        let waiting_idle = room.waiting_idle();
        let opening = room.opening();
        let row = NewRow {
            room_id: room.id().as_str().to_owned(),
            max_active: max_active(room),
            state: room.state().as_str(),
            admit_per_minute: admit_per_minute(room),
            waiting_idle_seconds: waiting_idle.map(|idle| seconds(idle.after)),
            waiting_idle_since: waiting_idle.map(|idle| micros(idle.since)),
            opens_at: opening.map(|opening| micros(opening.at)),
            shuffle_at_open: opening.is_some_and(|opening| opening.shuffle),
            concerts: id_array(room.concerts().iter().copied()),
            updated_at: micros(OffsetDateTime::now_utc()),
        };
        let line = self
            .store
            .write(move |conn| {
                // A savepoint inside the write: a taken id or concert undoes this room's rows
                // (and the line drawn) and nothing else.
                match conn
                    .transaction::<_, CreateAbort, _>(|conn| create_in_transaction(conn, &row))
                {
                    Ok(line) => Ok(Some(line)),
                    Err(CreateAbort::Taken) => Ok(None),
                    Err(CreateAbort::Db(error)) => Err(from_diesel(error)),
                }
            })
            .await?;
        Ok(match line {
            Some(line) => Written::Done(room.clone().on_line(line)),
            None => Written::Stale,
        })
    }
}
