//! Use cases: an operator creates a waiting room for some concerts, reads rooms' settings with
//! their live figures, and changes a room's settings. Every write goes over the state read, and
//! every instance follows it by its next admission step.

use std::sync::Arc;

use concert_domain::queue::{estimated_wait_seconds, retry_after_seconds};
use concert_domain::{ConcertId, CreateRoomRefused, NewRoom, ParseError, Room, RoomChange, RoomId};
use time::OffsetDateTime;

use crate::admin_access::{AdminAccess, AdminRefused};
use crate::idempotency::{Step, until_written};
use crate::ports::{Clock, RepositoryError, RoomRepository, Versioned};
use crate::queue_view::QueueView;
use crate::room_lines::RoomLines;

/// A room as an operator asks for it, before it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRequest {
    pub room_id: String,
    pub concert_ids: Vec<i64>,
    pub max_active: i64,
    pub admit_per_minute: Option<i64>,
    pub opens_at: Option<OffsetDateTime>,
    pub shuffle_at_open: bool,
    pub waiting_idle_seconds: Option<i64>,
}

impl RoomRequest {
    fn parse(&self) -> Result<NewRoom, ParseError> {
        Ok(NewRoom {
            id: RoomId::parse(&self.room_id)?,
            concerts: self
                .concert_ids
                .iter()
                .map(|id| {
                    ConcertId::new(*id).map_err(|_| {
                        ParseError::new("concertIds", "must hold positive concert ids")
                    })
                })
                .collect::<Result<_, _>>()?,
            max_active: self.max_active,
            admit_per_minute: self.admit_per_minute,
            // Kept to the microsecond, as stored, so every answer tells the same time.
            opens_at: self
                .opens_at
                .map(|at| at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000))
                .transpose()
                .map_err(|_| ParseError::new("opensAt", "is not a valid time"))?,
            shuffle_at_open: self.shuffle_at_open,
            waiting_idle_seconds: self.waiting_idle_seconds,
        })
    }
}

/// A room as an operator sees it: its settings and how its line stands (this instance's view,
/// at most an admission interval old).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomReport {
    pub room: Room,
    pub waiting: u64,
    pub active: u64,
    pub issued: u64,
    /// Tokens waiting for the room's opening.
    pub pre_queued: u64,
    pub admitted_last_minute: u64,
    /// What a newcomer joining now would be told (`None` when the line does not move at all, or
    /// before the room's opening).
    pub estimated_wait_seconds_at_back: Option<u64>,
}

/// Why an operator's call about a room was refused (rooms and revocations).
#[derive(Debug, thiserror::Error)]
pub enum RoomAdminError {
    #[error(transparent)]
    Admin(#[from] AdminRefused),
    /// A room id or a setting that does not parse (`400 VALIDATION_FAILED`).
    #[error(transparent)]
    Invalid(#[from] ParseError),
    /// No such room (`404 ROOM_NOT_FOUND`).
    #[error("no room {0}")]
    RoomNotFound(RoomId),
    /// A room with this id exists (`409 ROOM_EXISTS`).
    #[error("room {0} exists")]
    RoomExists(RoomId),
    /// A concert the new room names does not exist (`404 CONCERT_NOT_FOUND`).
    #[error("concert {0} does not exist")]
    ConcertNotFound(ConcertId),
    /// A concert the new room names is guarded by another room (`409 CONCERT_IN_ANOTHER_ROOM`).
    #[error("concert {0} is guarded by room {1}")]
    ConcertInAnotherRoom(ConcertId, RoomId),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

pub struct ManageRooms {
    rooms: Arc<dyn RoomRepository>,
    lines: RoomLines,
    admin: Arc<AdminAccess>,
    clock: Arc<dyn Clock>,
}

impl ManageRooms {
    pub fn new(
        rooms: Arc<dyn RoomRepository>,
        lines: impl Into<RoomLines>,
        admin: Arc<AdminAccess>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            rooms,
            lines: lines.into(),
            admin,
            clock,
        }
    }

    /// Creates a room for the concerts it names, with an empty line of its own, as the domain
    /// allows it over the rooms and concerts read.
    #[tracing::instrument(name = "create_room", skip_all, fields(room = request.room_id))]
    pub async fn create(
        &self,
        presented_key: Option<&str>,
        request: &RoomRequest,
    ) -> Result<RoomReport, RoomAdminError> {
        self.admin.check(presented_key)?;
        let new = request.parse()?;
        let created = until_written(|| async {
            let exists = self.rooms.find(&new.id).await?.is_some();
            let guards = self.rooms.guards_of(&new.concerts).await?;
            let room = Room::create(&new, exists, &guards, self.clock.now())
                .map_err(|refused| refused_creation(refused, &new.id))?;
            let written = self.rooms.create(&room).await?;
            Ok::<_, RoomAdminError>(Step::from(written))
        })
        .await?;
        tracing::info!(
            line = created.line().get(),
            concerts = ?created.concerts(),
            max_active = created.max_active(),
            "room created"
        );
        self.lines.note_room(&created);
        Ok(self.report(created))
    }

    /// Every room, `default` first, then in the order they were created.
    pub async fn list(
        &self,
        presented_key: Option<&str>,
    ) -> Result<Vec<RoomReport>, RoomAdminError> {
        self.admin.check(presented_key)?;
        let rooms = self.rooms.list().await?;
        Ok(rooms
            .into_iter()
            .map(|room| self.report(room.value))
            .collect())
    }

    pub async fn read(
        &self,
        presented_key: Option<&str>,
        room: &str,
    ) -> Result<RoomReport, RoomAdminError> {
        self.admin.check(presented_key)?;
        let room = self.load(&RoomId::parse(room)?).await?;
        Ok(self.report(room.value))
    }

    /// Applies `change` to the room as the domain allows it, over the version read.
    #[tracing::instrument(name = "update_room", skip_all, fields(room = room))]
    pub async fn update(
        &self,
        presented_key: Option<&str>,
        room: &str,
        change: &RoomChange,
    ) -> Result<RoomReport, RoomAdminError> {
        self.admin.check(presented_key)?;
        let id = RoomId::parse(room)?;
        let change = &change.clone();
        let changed = until_written(|| async {
            let stored = self.load(&id).await?;
            // The longest Retry-After anyone still waiting may have been told: positions are at
            // most the line as it stood a minute ago.
            let view = self.lines.of_line(stored.value.line());
            let line = view.snapshot().waiting + view.admitted_last_minute();
            let change = RoomChange {
                waiting_idle_grace: time::Duration::seconds(retry_after_seconds(line).into()),
                ..change.clone()
            };
            let changed = stored.value.changed(&change, self.clock.now())?;
            let write = Versioned::new(changed.clone(), stored.version);
            let written = self.rooms.save(&write).await?;
            Ok::<_, RoomAdminError>(Step::from(written).map(|()| changed.clone()))
        })
        .await?;
        tracing::info!(
            max_active = changed.max_active(),
            state = changed.state().as_str(),
            "room changed"
        );
        self.lines.note_room(&changed);
        Ok(self.report(changed))
    }

    async fn load(&self, id: &RoomId) -> Result<Versioned<Room>, RoomAdminError> {
        self.rooms
            .find(id)
            .await?
            .ok_or_else(|| RoomAdminError::RoomNotFound(id.clone()))
    }

    fn report(&self, room: Room) -> RoomReport {
        let view: QueueView = self.lines.of_line(room.line());
        let line = view.snapshot();
        let rate = view.admissions_per_second();
        RoomReport {
            waiting: line.waiting,
            active: line.active,
            issued: line.issued,
            pre_queued: line.pre_queued,
            admitted_last_minute: view.admitted_last_minute(),
            // Before the opening a newcomer is told no wait, only the opening time.
            estimated_wait_seconds_at_back: (room.admits() && !room.gathers_pre_queue())
                .then(|| estimated_wait_seconds(line.waiting + 1, rate)),
            room,
        }
    }
}

/// The error of a creation the domain refused.
fn refused_creation(refused: CreateRoomRefused, id: &RoomId) -> RoomAdminError {
    match refused {
        CreateRoomRefused::Invalid(invalid) => RoomAdminError::Invalid(invalid),
        CreateRoomRefused::Exists => RoomAdminError::RoomExists(id.clone()),
        CreateRoomRefused::ConcertNotFound(concert) => RoomAdminError::ConcertNotFound(concert),
        CreateRoomRefused::ConcertInAnotherRoom(concert, room) => {
            RoomAdminError::ConcertInAnotherRoom(concert, room)
        }
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::RoomState;
    use mockall::predicate::eq;

    use super::*;
    use crate::admin_access::AdminKey;
    use crate::ports::{MockRoomRepository, Version, Written};
    use crate::test_support::{clock, view_serving};

    const KEY: &str = "operators-admin-key";

    fn default_room(max_active: u32, state: RoomState) -> Room {
        Room::new(RoomId::default_room(), max_active, state).expect("a room")
    }

    fn stored(room: Room, version: i64) -> Option<Versioned<Room>> {
        Some(Versioned::new(room, Version::new(version)))
    }

    async fn manage(rooms: MockRoomRepository) -> ManageRooms {
        ManageRooms::new(
            Arc::new(rooms),
            view_serving(10).await,
            Arc::new(AdminAccess::new(
                AdminKey::new(Some(KEY.to_owned())),
                clock(),
            )),
            clock(),
        )
    }

    fn gala_request(concerts: Vec<i64>) -> RoomRequest {
        RoomRequest {
            room_id: "spring-gala".to_owned(),
            concert_ids: concerts,
            max_active: 50,
            admit_per_minute: None,
            opens_at: None,
            shuffle_at_open: false,
            waiting_idle_seconds: None,
        }
    }

    fn gala_id() -> RoomId {
        RoomId::parse("spring-gala").expect("an id")
    }

    fn concert(id: i64) -> ConcertId {
        ConcertId::new(id).expect("a concert")
    }

    #[tokio::test]
    async fn a_room_is_created_over_the_guards_read_and_decided_again_when_a_concert_was_taken() {
        let mut rooms = MockRoomRepository::new();
        rooms.expect_find().returning(|_| Ok(None));
        let mut guards = vec![
            vec![(concert(3), concert_domain::ConcertGuard::DefaultRoom)],
            vec![(
                concert(3),
                concert_domain::ConcertGuard::Room(RoomId::parse("winter").expect("an id")),
            )],
        ]
        .into_iter();
        rooms
            .expect_guards_of()
            .with(eq(vec![concert(3)]))
            .times(2)
            .returning(move |_| Ok(guards.next().expect("two reads")));
        // The first write finds the concert taken meanwhile; the second decision refuses.
        rooms
            .expect_create()
            .withf(|room| room.id() == &gala_id() && room.concerts() == [concert(3)])
            .times(1)
            .returning(|_| Ok(Written::Stale));
        let manage = manage(rooms).await;

        let refused = manage
            .create(Some(KEY), &gala_request(vec![3]))
            .await
            .expect_err("taken");

        assert!(
            matches!(&refused, RoomAdminError::ConcertInAnotherRoom(c, room)
                if *c == concert(3) && room.as_str() == "winter"),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_created_room_is_known_to_this_instance_at_once_with_its_line() {
        let line = concert_domain::LineNo::new(4).expect("a line");
        let mut rooms = MockRoomRepository::new();
        rooms.expect_find().returning(|_| Ok(None));
        rooms.expect_guards_of().returning(|_| {
            Ok(vec![(
                concert(3),
                concert_domain::ConcertGuard::DefaultRoom,
            )])
        });
        rooms
            .expect_create()
            .times(1)
            .returning(move |room| Ok(Written::Done(room.clone().on_line(line))));
        let manage = manage(rooms).await;

        let report = manage
            .create(Some(KEY), &gala_request(vec![3]))
            .await
            .expect("created");

        assert_eq!(report.room.line(), line);
        assert_eq!(report.room.state(), RoomState::Open);
        let view = manage.lines.of_room(&gala_id()).expect("known here");
        assert_eq!(view.line(), line);
        let ticket = concert_domain::TicketNo::new(line.start().get() + 1).expect("a ticket");
        assert_eq!(manage.lines.admit(ticket, concert(3)), Ok(()));
        assert!(manage.lines.admit(ticket, concert(4)).is_err());
    }

    #[test]
    fn an_opening_time_is_kept_to_the_microsecond_as_the_store_keeps_it() {
        let mut request = gala_request(vec![3]);
        request.opens_at = Some(time::macros::datetime!(2026-12-24 10:00:00.123_456_789 UTC));
        request.shuffle_at_open = true;
        let parsed = request.parse().expect("parsed");
        assert_eq!(
            parsed.opens_at,
            Some(time::macros::datetime!(2026-12-24 10:00:00.123_456 UTC))
        );
    }

    #[tokio::test]
    async fn a_creation_is_checked_key_first_then_parsed_before_any_read() {
        let mut rooms = MockRoomRepository::new();
        rooms.expect_find().never();
        rooms.expect_create().never();
        let manage = manage(rooms).await;
        assert!(matches!(
            manage.create(Some("wrong"), &gala_request(vec![3])).await,
            Err(RoomAdminError::Admin(AdminRefused::KeyInvalid))
        ));
        let mut bad = gala_request(vec![0]);
        assert!(matches!(
            manage.create(Some(KEY), &bad).await,
            Err(RoomAdminError::Invalid(invalid)) if invalid.field == "concertIds"
        ));
        bad = gala_request(vec![3]);
        bad.room_id = "Spring Gala".to_owned();
        assert!(matches!(
            manage.create(Some(KEY), &bad).await,
            Err(RoomAdminError::Invalid(invalid)) if invalid.field == "roomId"
        ));
    }

    #[tokio::test]
    async fn a_change_is_written_over_the_version_read_and_this_instance_follows_at_once() {
        let mut rooms = MockRoomRepository::new();
        let mut reads = vec![
            stored(default_room(500, RoomState::Open), 3),
            stored(default_room(400, RoomState::Open), 4),
        ]
        .into_iter();
        rooms
            .expect_find()
            .times(2)
            .returning(move |_| Ok(reads.next().expect("two reads")));
        rooms
            .expect_save()
            .with(eq(Versioned::new(
                default_room(500, RoomState::Paused),
                Version::new(3),
            )))
            .times(1)
            .returning(|_| Ok(Written::Stale));
        rooms
            .expect_save()
            .with(eq(Versioned::new(
                default_room(400, RoomState::Paused),
                Version::new(4),
            )))
            .times(1)
            .returning(|_| Ok(Written::Done(())));
        let manage = manage(rooms).await;
        let change = RoomChange {
            state: Some(RoomState::Paused),
            ..RoomChange::default()
        };

        let report = manage
            .update(Some(KEY), "default", &change)
            .await
            .expect("changed");

        assert_eq!(report.room, default_room(400, RoomState::Paused));
        assert_eq!(report.estimated_wait_seconds_at_back, None, "paused");
        assert_eq!(
            manage.lines.default_line().room(),
            Some(default_room(400, RoomState::Paused))
        );
    }

    #[tokio::test]
    async fn a_bad_setting_writes_nothing() {
        let mut rooms = MockRoomRepository::new();
        rooms
            .expect_find()
            .returning(|_| Ok(stored(default_room(500, RoomState::Open), 1)));
        rooms.expect_save().never();
        let change = RoomChange {
            max_active: Some(0),
            ..RoomChange::default()
        };
        let refused = manage(rooms)
            .await
            .update(Some(KEY), "default", &change)
            .await;
        assert!(matches!(refused, Err(RoomAdminError::Invalid(_))));
    }

    #[tokio::test]
    async fn reads_show_the_settings_with_the_line_and_refuse_unknown_rooms_and_keys() {
        let mut rooms = MockRoomRepository::new();
        rooms.expect_find().returning(|id| {
            Ok(stored(default_room(500, RoomState::Open), 1).filter(|_| id.is_default()))
        });
        rooms.expect_list().returning(|| {
            Ok(vec![Versioned::new(
                default_room(500, RoomState::Open),
                Version::new(1),
            )])
        });
        let manage = manage(rooms).await;

        let report = manage.read(Some(KEY), "default").await.expect("read");
        assert_eq!(report.room.max_active(), 500);
        assert_eq!((report.waiting, report.active), (3, 2));
        assert!(report.estimated_wait_seconds_at_back.is_some());
        assert_eq!(manage.list(Some(KEY)).await.expect("list"), vec![report]);

        assert!(matches!(
            manage.read(Some(KEY), "spring-gala").await,
            Err(RoomAdminError::RoomNotFound(_))
        ));
        assert!(matches!(
            manage.read(Some("wrong"), "default").await,
            Err(RoomAdminError::Admin(AdminRefused::KeyInvalid))
        ));
    }

    #[tokio::test]
    async fn a_waiting_rule_turned_on_holds_from_the_clocks_now_after_the_longest_retry_after() {
        let mut rooms = MockRoomRepository::new();
        rooms
            .expect_find()
            .returning(|_| Ok(stored(default_room(500, RoomState::Open), 1)));
        rooms
            .expect_save()
            .withf(|written| {
                written
                    .value
                    .waiting_idle()
                    .map(|idle| (idle.after, idle.since))
                    == Some((
                        time::Duration::seconds(90),
                        // 3 waiting: they were told to come back within a second.
                        crate::test_support::NOW + time::Duration::seconds(1),
                    ))
            })
            .times(1)
            .returning(|_| Ok(Written::Done(())));
        let change = RoomChange {
            waiting_idle_seconds: Some(Some(90)),
            ..RoomChange::default()
        };
        let report = manage(rooms)
            .await
            .update(Some(KEY), "default", &change)
            .await
            .expect("changed");
        assert!(report.room.waiting_idle().is_some());
    }
}
