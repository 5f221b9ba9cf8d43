//! `RoomRepository` over the main database's, for a deployment whose lines are on Redis.
//!
//! The rooms' settings stay in the main database; a room's opening happens on its Redis line
//! (the line's `phase` key goes from `gathering` to `opened` in the opening's write script), not
//! in the room's row. This overlay reports a room opened when its line says so, and keeps the
//! `phase` of the lines of rooms with an opening:
//!
//! - a room created with an opening (and, after Redis lost its data, any room read that still
//!   gathers) gets `phase = gathering` (`SET NX`: an opened line stays opened);
//! - a room read whose line opened is [`Room::opened`], its version one above the stored row's
//!   (as PostgreSQL's opening moves the row's version), so that a decision made on the room
//!   before its opening is stale; a save over such a version is passed to the database one
//!   below.

use std::sync::Arc;

use async_trait::async_trait;
use concert_application::ports::{RepositoryError, RoomRepository, Versioned, Written};
use concert_domain::{ConcertGuard, ConcertId, Room, RoomId};

use crate::RedisLine;
use crate::keys::corrupt;

const GATHERING: &str = "gathering";
const OPENED: &str = "opened";

/// The rooms of the main database with each room's opening as its Redis line has it.
#[derive(Clone)]
pub struct RedisLineRooms {
    line: RedisLine,
    rooms: Arc<dyn RoomRepository>,
}

impl std::fmt::Debug for RedisLineRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLineRooms")
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl RedisLineRooms {
    pub(crate) fn new(line: RedisLine, rooms: Arc<dyn RoomRepository>) -> Self {
        Self { line, rooms }
    }

    /// Whether the stored room's line opened on Redis (marking it gathering when it gathers and
    /// Redis does not know it yet).
    async fn opened_on_redis(&self, room: &Room) -> Result<bool, RepositoryError> {
        if !room.gathers_pre_queue() {
            return Ok(false);
        }
        let key = self.line.keys().phase(room.line());
        let phase: Option<String> = self.line.command(redis::cmd("GET").arg(&key)).await?;
        match phase.as_deref() {
            Some(OPENED) => Ok(true),
            Some(GATHERING) => Ok(false),
            None => {
                self.mark_gathering(room).await?;
                Ok(false)
            }
            Some(other) => Err(corrupt(format!("the line phase {other:?}"))),
        }
    }

    async fn mark_gathering(&self, room: &Room) -> Result<(), RepositoryError> {
        let key = self.line.keys().phase(room.line());
        self.line
            .command::<()>(redis::cmd("SET").arg(key).arg(GATHERING).arg("NX"))
            .await
    }

    async fn overlay(&self, stored: Versioned<Room>) -> Result<Versioned<Room>, RepositoryError> {
        Ok(if self.opened_on_redis(&stored.value).await? {
            Versioned::new(
                stored.value.opened(),
                concert_application::ports::Version::new(stored.version.get() + 1),
            )
        } else {
            stored
        })
    }
}

#[async_trait]
impl RoomRepository for RedisLineRooms {
    async fn find(&self, room: &RoomId) -> Result<Option<Versioned<Room>>, RepositoryError> {
        match self.rooms.find(room).await? {
            Some(stored) => Ok(Some(self.overlay(stored).await?)),
            None => Ok(None),
        }
    }

    async fn list(&self) -> Result<Vec<Versioned<Room>>, RepositoryError> {
        let mut rooms = Vec::new();
        for stored in self.rooms.list().await? {
            rooms.push(self.overlay(stored).await?);
        }
        Ok(rooms)
    }

    async fn guards_of(
        &self,
        concerts: &[ConcertId],
    ) -> Result<Vec<(ConcertId, ConcertGuard)>, RepositoryError> {
        self.rooms.guards_of(concerts).await
    }

    async fn create(&self, room: &Room) -> Result<Written<Room>, RepositoryError> {
        let created = self.rooms.create(room).await?;
        if let Written::Done(created) = &created
            && created.gathers_pre_queue()
        {
            self.mark_gathering(created).await?;
        }
        Ok(created)
    }

    async fn save(&self, room: &Versioned<Room>) -> Result<Written<()>, RepositoryError> {
        let Some(stored) = self.rooms.find(room.value.id()).await? else {
            return self.rooms.save(room).await;
        };
        // The version read through this overlay is one above the row's once the line opened.
        let version = if self.opened_on_redis(&stored.value).await? {
            room.version.get() - 1
        } else {
            room.version.get()
        };
        self.rooms
            .save(&Versioned::new(
                room.value.clone(),
                concert_application::ports::Version::new(version),
            ))
            .await
    }

    async fn create_if_absent(&self, room: &Room) -> Result<(), RepositoryError> {
        self.rooms.create_if_absent(room).await
    }
}
