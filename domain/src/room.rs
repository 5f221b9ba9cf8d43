//! Waiting rooms: each on-sale has its own line. A room guards the concerts it names; the
//! `default` room guards every concert no other room names. A room's settings live in the store
//! so that every instance follows an operator's change.

use std::collections::HashMap;
use std::fmt;

use time::{Duration, OffsetDateTime};

use crate::queue::{AccessRefused, LineNo, WaitingIdle};
use crate::{ConcertId, ParseError, QueuePolicy, TicketNo};

/// A room's id: 1 to 64 characters of `a-z`, `0-9` and `-`, as an operator writes it in a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomId(String);

impl RoomId {
    /// The room that guards every concert no other room names.
    pub const DEFAULT: &'static str = "default";

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() || raw.len() > 64 {
            return Err(ParseError::new("roomId", "must be 1 to 64 characters"));
        }
        if !raw
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        {
            return Err(ParseError::new(
                "roomId",
                "may hold only lowercase letters, digits and '-'",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn default_room() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a room lets people in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomState {
    /// Newcomers join; waiting tokens are admitted as places free up.
    Open,
    /// Newcomers still join, but nobody is admitted until the room opens again.
    Paused,
    /// Newcomers are turned away; tokens already issued keep their state and are admitted.
    Closed,
}

impl RoomState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Paused => "PAUSED",
            Self::Closed => "CLOSED",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "OPEN" => Ok(Self::Open),
            "PAUSED" => Ok(Self::Paused),
            "CLOSED" => Ok(Self::Closed),
            _ => Err(ParseError::new("state", "must be OPEN, PAUSED or CLOSED")),
        }
    }
}

/// Where a room stands, as an operator is shown it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomPhase {
    /// An open room before its opening: newcomers gather in the pre-queue.
    PreQueue,
    Open,
    Paused,
    Closed,
}

/// The most tokens a room may have active at once.
pub const MAX_ROOM_ACTIVE: u32 = 1_000_000;

/// A room's live settings, as an operator sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    id: RoomId,
    line: LineNo,
    /// The concerts it guards, in id order (none for `default`: it guards the rest).
    concerts: Vec<ConcertId>,
    max_active: u32,
    state: RoomState,
    admit_per_minute: Option<u32>,
    waiting_idle: Option<WaitingIdle>,
    opening: Option<Opening>,
}

/// A scheduled opening: before `at`, newcomers gather in a pre-queue; at `at` they all get
/// places, shuffled or in arrival order, ahead of everyone who comes later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    pub at: OffsetDateTime,
    pub shuffle: bool,
    /// Whether the pre-queue was given its places (the line then runs as any other).
    pub done: bool,
}

/// A room as an operator asks for it; [`Room::create`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoom {
    pub id: RoomId,
    pub concerts: Vec<ConcertId>,
    pub max_active: i64,
    pub admit_per_minute: Option<i64>,
    pub opens_at: Option<OffsetDateTime>,
    pub shuffle_at_open: bool,
    pub waiting_idle_seconds: Option<i64>,
}

/// Who guards a concert, as the store holds it when a room is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConcertGuard {
    /// No such concert.
    Missing,
    /// The `default` room (no other room names it).
    DefaultRoom,
    Room(RoomId),
}

/// Why a room was not created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateRoomRefused {
    #[error(transparent)]
    Invalid(#[from] ParseError),
    #[error("a room with this id exists")]
    Exists,
    #[error("concert {0} does not exist")]
    ConcertNotFound(ConcertId),
    #[error("concert {0} is guarded by room {1}")]
    ConcertInAnotherRoom(ConcertId, RoomId),
}

/// An operator's change to a room: each field that is `Some` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomChange {
    pub max_active: Option<i64>,
    pub state: Option<RoomState>,
    /// `Some(None)` lifts the limit.
    pub admit_per_minute: Option<Option<i64>>,
    /// `Some(None)`: waiting users keep their place however long they are away.
    pub waiting_idle_seconds: Option<Option<i64>>,
    /// When a waiting rule is turned on or shortened, how long after the change it starts to
    /// count: the longest `Retry-After` a waiting client may have been told, so nobody who came
    /// back when told is passed over.
    pub waiting_idle_grace: Duration,
}

impl Room {
    /// A room on the default line guarding no concert by name (the `default` room, or a room
    /// as a store restores it, with the builders below).
    pub fn new(id: RoomId, max_active: u32, state: RoomState) -> Result<Self, ParseError> {
        Ok(Self {
            id,
            line: LineNo::DEFAULT,
            concerts: Vec::new(),
            max_active: parse_max_active(i64::from(max_active))?,
            state,
            admit_per_minute: None,
            waiting_idle: None,
            opening: None,
        })
    }

    /// A new room as the operator asks for it, `OPEN` (or waiting for its opening), or why not:
    /// `exists` says whether its id is taken, `guards` who guards each concert it names now.
    /// A concert may leave the `default` room, never another room. Its line is the store's to
    /// number ([`Room::on_line`]).
    pub fn create(
        new: &NewRoom,
        exists: bool,
        guards: &[(ConcertId, ConcertGuard)],
        now: OffsetDateTime,
    ) -> Result<Self, CreateRoomRefused> {
        let mut concerts = new.concerts.clone();
        concerts.sort_unstable();
        concerts.dedup();
        if concerts.is_empty() {
            return Err(ParseError::new("concertIds", "must name at least one concert").into());
        }
        if new.shuffle_at_open && new.opens_at.is_none() {
            return Err(ParseError::new("shuffleAtOpen", "needs opensAt").into());
        }
        let waiting_idle = new
            .waiting_idle_seconds
            .map(|seconds| {
                parse_waiting_idle_seconds(seconds).map(|seconds| WaitingIdle {
                    after: Duration::seconds(i64::from(seconds)),
                    since: now,
                })
            })
            .transpose()?;
        let room = Self {
            id: new.id.clone(),
            line: LineNo::DEFAULT,
            concerts,
            max_active: parse_max_active(new.max_active)?,
            state: RoomState::Open,
            admit_per_minute: new
                .admit_per_minute
                .map(parse_admit_per_minute)
                .transpose()?,
            waiting_idle,
            opening: new.opens_at.map(|at| Opening {
                at,
                shuffle: new.shuffle_at_open,
                done: false,
            }),
        };
        if exists || room.id.is_default() {
            return Err(CreateRoomRefused::Exists);
        }
        for concert in &room.concerts {
            let guard = guards
                .iter()
                .find(|(guarded, _)| guarded == concert)
                .map_or(&ConcertGuard::Missing, |(_, guard)| guard);
            match guard {
                ConcertGuard::Missing => return Err(CreateRoomRefused::ConcertNotFound(*concert)),
                ConcertGuard::Room(other) => {
                    return Err(CreateRoomRefused::ConcertInAnotherRoom(
                        *concert,
                        other.clone(),
                    ));
                }
                ConcertGuard::DefaultRoom => {}
            }
        }
        Ok(room)
    }

    /// The room on `line`, as the store numbered it.
    #[must_use]
    pub fn on_line(mut self, line: LineNo) -> Self {
        self.line = line;
        self
    }

    /// The room guarding `concerts`, as a store holds them.
    #[must_use]
    pub fn guarding(mut self, mut concerts: Vec<ConcertId>) -> Self {
        concerts.sort_unstable();
        concerts.dedup();
        self.concerts = concerts;
        self
    }

    /// The room with its scheduled opening, as a store holds it.
    #[must_use]
    pub fn with_opening(mut self, opening: Option<Opening>) -> Self {
        self.opening = opening;
        self
    }

    pub fn line(&self) -> LineNo {
        self.line
    }

    /// The concerts the room names (none for `default`, which guards the others).
    pub fn concerts(&self) -> &[ConcertId] {
        &self.concerts
    }

    pub fn opening(&self) -> Option<Opening> {
        self.opening
    }

    /// Where the room stands: its state, `PreQueue` for an open room before its opening (an
    /// operator's pause or close is shown as such).
    pub fn phase(&self) -> RoomPhase {
        match self.state {
            RoomState::Open if self.gathers_pre_queue() => RoomPhase::PreQueue,
            RoomState::Open => RoomPhase::Open,
            RoomState::Paused => RoomPhase::Paused,
            RoomState::Closed => RoomPhase::Closed,
        }
    }

    /// Whether newcomers join the pre-queue: the room has an opening that has not happened.
    pub fn gathers_pre_queue(&self) -> bool {
        self.opening.is_some_and(|opening| !opening.done)
    }

    /// Whether the pre-queue is due its places at `now`.
    pub fn opens_at(&self, now: OffsetDateTime) -> bool {
        self.opening
            .is_some_and(|opening| !opening.done && now >= opening.at)
    }

    /// The room once its pre-queue got its places.
    #[must_use]
    pub fn opened(mut self) -> Self {
        if let Some(opening) = &mut self.opening {
            opening.done = true;
        }
        self
    }

    /// When a client in the pre-queue should ask again: the seconds until the opening, 1 to 30.
    pub fn pre_queue_retry_after_seconds(&self, now: OffsetDateTime) -> u32 {
        let until = self
            .opening
            .map_or(Duration::ZERO, |opening| opening.at - now);
        let seconds = until.whole_seconds().clamp(1, 30);
        u32::try_from(seconds).unwrap_or(30)
    }

    /// The room with its rule for waiting users who stop watching, as a store holds it.
    pub fn with_waiting_idle(
        mut self,
        waiting_idle: Option<WaitingIdle>,
    ) -> Result<Self, ParseError> {
        if let Some(idle) = waiting_idle {
            parse_waiting_idle_seconds(idle.after.whole_seconds())?;
        }
        self.waiting_idle = waiting_idle;
        Ok(self)
    }

    /// `waitingIdleSeconds` and since when it holds; `None`: waiting users keep their place.
    pub fn waiting_idle(&self) -> Option<WaitingIdle> {
        self.waiting_idle
    }

    /// The room with its pace of admissions, as a store holds it.
    pub fn with_admit_per_minute(mut self, per_minute: Option<u32>) -> Result<Self, ParseError> {
        self.admit_per_minute = per_minute
            .map(|per_minute| parse_admit_per_minute(i64::from(per_minute)))
            .transpose()?;
        Ok(self)
    }

    /// At most this many admissions in any 60 seconds, spread evenly; `None`: as fast as places
    /// free up.
    pub fn admit_per_minute(&self) -> Option<u32> {
        self.admit_per_minute
    }

    /// Whether the room paces its admissions (`admitPerMinute` is set).
    pub fn is_paced(&self) -> bool {
        self.admit_per_minute.is_some()
    }

    pub fn id(&self) -> &RoomId {
        &self.id
    }

    pub fn max_active(&self) -> u32 {
        self.max_active
    }

    pub fn state(&self) -> RoomState {
        self.state
    }

    /// The room after `change` made at `now`, or why the change is refused (nothing is half
    /// applied). A waiting rule turned on or shortened counts from `now` plus the change's grace;
    /// a longer window keeps its start.
    pub fn changed(&self, change: &RoomChange, now: OffsetDateTime) -> Result<Self, ParseError> {
        let max_active = change
            .max_active
            .map(parse_max_active)
            .transpose()?
            .unwrap_or(self.max_active);
        let admit_per_minute = match change.admit_per_minute {
            Some(per_minute) => per_minute.map(parse_admit_per_minute).transpose()?,
            None => self.admit_per_minute,
        };
        let waiting_idle = match change.waiting_idle_seconds {
            Some(Some(seconds)) => {
                let after = Duration::seconds(i64::from(parse_waiting_idle_seconds(seconds)?));
                let since = match self.waiting_idle {
                    Some(idle) if after >= idle.after => idle.since,
                    _ => now + change.waiting_idle_grace,
                };
                Some(WaitingIdle { after, since })
            }
            Some(None) => None,
            None => self.waiting_idle,
        };
        Ok(Self {
            max_active,
            state: change.state.unwrap_or(self.state),
            admit_per_minute,
            waiting_idle,
            ..self.clone()
        })
    }

    /// How many of `free` places may be filled now under the room's pace, and the pace refilled
    /// to now (spend what is admitted with [`Pace::spent`]). Never more than `admitPerMinute`
    /// within any 60 seconds (`last_minute`: the admissions of the 60 seconds before `now`), and
    /// never more than the credit accrued at `admitPerMinute ÷ 60` a second, kept to about one
    /// second's worth, so admissions come evenly over the minute rather than in one burst.
    pub fn paced(
        &self,
        free: u32,
        last_minute: u32,
        pace: Pace,
        now: OffsetDateTime,
    ) -> (u32, Pace) {
        let Some(per_minute) = self.admit_per_minute else {
            return (free, pace);
        };
        let refilled = pace.refilled(per_minute, now);
        let credit = u32::try_from(refilled.credit_millis / 1000).unwrap_or(0);
        let window = per_minute.saturating_sub(last_minute);
        (free.min(credit).min(window), refilled)
    }

    /// The queue policy this room's line runs under: the deployment's deadlines and the room's
    /// maximum.
    pub fn admission_policy(&self, deployment: &QueuePolicy) -> QueuePolicy {
        QueuePolicy {
            max_active: self.max_active,
            waiting_idle: self.waiting_idle,
            ..*deployment
        }
    }

    /// Whether waiting tokens may be admitted now.
    pub fn admits(&self) -> bool {
        self.state != RoomState::Paused
    }

    /// Whether a newcomer may take a token.
    pub fn accepts_newcomers(&self) -> bool {
        self.state != RoomState::Closed
    }
}

/// Which room's line guards each concert: the room that names it, else the `default` room's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomGuards {
    by_concert: HashMap<ConcertId, LineNo>,
}

impl RoomGuards {
    pub fn of<'a>(rooms: impl IntoIterator<Item = &'a Room>) -> Self {
        let by_concert = rooms
            .into_iter()
            .flat_map(|room| room.concerts.iter().map(|concert| (*concert, room.line)))
            .collect();
        Self { by_concert }
    }

    /// The line whose active tokens may act on `concert`.
    pub fn line_of(&self, concert: ConcertId) -> LineNo {
        self.by_concert
            .get(&concert)
            .copied()
            .unwrap_or(LineNo::DEFAULT)
    }

    /// Whether an active `ticket` may act on `concert` (its dates, seats, holds, payments): only
    /// in the room it waited for.
    pub fn admit(&self, ticket: TicketNo, concert: ConcertId) -> Result<(), AccessRefused> {
        if ticket.line() == self.line_of(concert) {
            Ok(())
        } else {
            Err(AccessRefused::WrongRoom)
        }
    }
}

/// The credit of a room's pace of admissions, in thousandths of an admission, as of `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub credit_millis: i64,
    pub at: Option<OffsetDateTime>,
}

impl Pace {
    /// No credit yet: the first admission comes once credit has accrued.
    pub const EMPTY: Self = Self {
        credit_millis: 0,
        at: None,
    };

    /// The credit at `now`: accrued at `per_minute ÷ 60` a second since `at`, up to one second's
    /// worth plus one admission (so steps up to a second apart lose nothing of the rate, and
    /// none admits more than that). Time never runs back.
    fn refilled(self, per_minute: u32, now: OffsetDateTime) -> Self {
        let cap = i64::from(per_minute) * 1000 / 60 + 1000;
        let Some(at) = self.at else {
            return Self {
                credit_millis: self.credit_millis.min(cap),
                at: Some(now),
            };
        };
        let elapsed = (now - at).max(Duration::ZERO).whole_milliseconds();
        let accrued = i64::try_from(elapsed * i128::from(per_minute) / 60).unwrap_or(i64::MAX);
        Self {
            credit_millis: self.credit_millis.saturating_add(accrued).min(cap),
            at: Some(now.max(at)),
        }
    }

    /// The pace after `admitted` admissions.
    #[must_use]
    pub fn spent(self, admitted: u32) -> Self {
        Self {
            credit_millis: self.credit_millis - i64::from(admitted) * 1000,
            ..self
        }
    }
}

fn parse_admit_per_minute(raw: i64) -> Result<u32, ParseError> {
    u32::try_from(raw)
        .ok()
        .filter(|per_minute| (1..=MAX_ROOM_ACTIVE).contains(per_minute))
        .ok_or_else(|| {
            ParseError::new(
                "admitPerMinute",
                format!("must be 1 to {MAX_ROOM_ACTIVE}, or null"),
            )
        })
}

/// The shortest and longest `waitingIdleSeconds`.
pub const WAITING_IDLE_SECONDS: std::ops::RangeInclusive<u32> = 5..=86_400;

fn parse_waiting_idle_seconds(raw: i64) -> Result<u32, ParseError> {
    u32::try_from(raw)
        .ok()
        .filter(|seconds| WAITING_IDLE_SECONDS.contains(seconds))
        .ok_or_else(|| {
            ParseError::new(
                "waitingIdleSeconds",
                format!(
                    "must be {} to {}, or null",
                    WAITING_IDLE_SECONDS.start(),
                    WAITING_IDLE_SECONDS.end()
                ),
            )
        })
}

fn parse_max_active(raw: i64) -> Result<u32, ParseError> {
    u32::try_from(raw)
        .ok()
        .filter(|max| (1..=MAX_ROOM_ACTIVE).contains(max))
        .ok_or_else(|| ParseError::new("maxActive", format!("must be 1 to {MAX_ROOM_ACTIVE}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: OffsetDateTime = time::macros::datetime!(2026-12-01 12:00 UTC);

    #[test]
    fn room_ids_are_short_lowercase_slugs() {
        for good in ["default", "spring-gala", "a", "2026-12-24", &"x".repeat(64)] {
            assert_eq!(RoomId::parse(good).expect(good).as_str(), good);
        }
        for bad in ["", "Spring", "spring gala", "gala_1", "é", &"x".repeat(65)] {
            let refused = RoomId::parse(bad).expect_err(bad);
            assert_eq!(refused.field, "roomId");
        }
        assert!(RoomId::default_room().is_default());
        assert!(!RoomId::parse("gala").expect("gala").is_default());
    }

    fn room() -> Room {
        Room::new(RoomId::default_room(), 500, RoomState::Open).expect("a room")
    }

    fn concert(id: i64) -> ConcertId {
        ConcertId::new(id).expect("a concert id")
    }

    fn gala(concerts: &[i64]) -> NewRoom {
        NewRoom {
            id: RoomId::parse("spring-gala").expect("an id"),
            concerts: concerts.iter().copied().map(concert).collect(),
            max_active: 500,
            admit_per_minute: None,
            opens_at: None,
            shuffle_at_open: false,
            waiting_idle_seconds: None,
        }
    }

    #[test]
    fn a_room_takes_its_concerts_from_the_default_room_only() {
        let guards = [
            (concert(3), ConcertGuard::DefaultRoom),
            (concert(4), ConcertGuard::DefaultRoom),
        ];
        let created = Room::create(&gala(&[4, 3, 4]), false, &guards, NOW).expect("created");
        assert_eq!(created.concerts(), &[concert(3), concert(4)]);
        assert_eq!(created.state(), RoomState::Open);
        assert_eq!(
            Room::create(&gala(&[3]), true, &guards, NOW),
            Err(CreateRoomRefused::Exists)
        );
        let mut default = gala(&[3]);
        default.id = RoomId::default_room();
        assert_eq!(
            Room::create(&default, false, &guards, NOW),
            Err(CreateRoomRefused::Exists)
        );
        assert_eq!(
            Room::create(&gala(&[3, 9]), false, &guards, NOW),
            Err(CreateRoomRefused::ConcertNotFound(concert(9)))
        );
        let other = RoomId::parse("winter").expect("an id");
        let taken = [(concert(3), ConcertGuard::Room(other.clone()))];
        assert_eq!(
            Room::create(&gala(&[3]), false, &taken, NOW),
            Err(CreateRoomRefused::ConcertInAnotherRoom(concert(3), other))
        );
    }

    #[test]
    fn a_new_room_is_checked_before_anything_else() {
        let guards = [(concert(3), ConcertGuard::DefaultRoom)];
        type Spoil = fn(&mut NewRoom);
        let cases: [(&str, Spoil); 5] = [
            ("concertIds", |room| room.concerts.clear()),
            ("maxActive", |room| room.max_active = 0),
            ("admitPerMinute", |room| room.admit_per_minute = Some(0)),
            ("waitingIdleSeconds", |room| {
                room.waiting_idle_seconds = Some(1);
            }),
            ("shuffleAtOpen", |room| room.shuffle_at_open = true),
        ];
        for (field, spoil) in cases {
            let mut new = gala(&[3]);
            spoil(&mut new);
            match Room::create(&new, true, &guards, NOW) {
                Err(CreateRoomRefused::Invalid(refused)) => assert_eq!(refused.field, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut scheduled = gala(&[3]);
        scheduled.opens_at = Some(NOW + Duration::minutes(10));
        scheduled.shuffle_at_open = true;
        scheduled.waiting_idle_seconds = Some(60);
        let room = Room::create(&scheduled, false, &guards, NOW).expect("created");
        assert_eq!(
            room.opening(),
            Some(Opening {
                at: NOW + Duration::minutes(10),
                shuffle: true,
                done: false
            })
        );
        assert_eq!(room.waiting_idle().map(|idle| idle.since), Some(NOW));
    }

    #[test]
    fn a_scheduled_room_gathers_a_pre_queue_until_its_opening_is_done() {
        let mut scheduled = gala(&[3]);
        scheduled.opens_at = Some(NOW + Duration::seconds(95));
        let room = Room::create(
            &scheduled,
            false,
            &[(concert(3), ConcertGuard::DefaultRoom)],
            NOW,
        )
        .expect("created");
        assert!(room.gathers_pre_queue());
        assert!(!room.opens_at(NOW));
        assert_eq!(room.pre_queue_retry_after_seconds(NOW), 30);
        let close = NOW + Duration::seconds(90);
        assert_eq!(room.pre_queue_retry_after_seconds(close), 5);
        let due = NOW + Duration::seconds(95);
        assert!(room.opens_at(due));
        assert_eq!(room.pre_queue_retry_after_seconds(due), 1);
        assert_eq!(room.phase(), RoomPhase::PreQueue);
        let opened = room.opened();
        assert!(!opened.gathers_pre_queue() && !opened.opens_at(due));
        assert_eq!(opened.phase(), RoomPhase::Open);
        assert!(
            !Room::create(
                &gala(&[3]),
                false,
                &[(concert(3), ConcertGuard::DefaultRoom)],
                NOW
            )
            .expect("created")
            .gathers_pre_queue()
        );
    }

    #[test]
    fn a_concert_is_guarded_by_the_room_naming_it_else_by_the_default_room() {
        let line = LineNo::new(3).expect("a line");
        let gala = Room::create(
            &gala(&[3]),
            false,
            &[(concert(3), ConcertGuard::DefaultRoom)],
            NOW,
        )
        .expect("created")
        .on_line(line);
        let guards = RoomGuards::of([&room(), &gala]);
        assert_eq!(guards.line_of(concert(3)), line);
        assert_eq!(guards.line_of(concert(4)), LineNo::DEFAULT);
        let gala_ticket = TicketNo::new(line.start().get() + 1).expect("a ticket");
        let default_ticket = TicketNo::new(1).expect("a ticket");
        assert_eq!(guards.admit(gala_ticket, concert(3)), Ok(()));
        assert_eq!(guards.admit(default_ticket, concert(4)), Ok(()));
        assert_eq!(
            guards.admit(default_ticket, concert(3)),
            Err(AccessRefused::WrongRoom)
        );
        assert_eq!(
            guards.admit(gala_ticket, concert(4)),
            Err(AccessRefused::WrongRoom)
        );
    }

    #[test]
    fn a_change_sets_only_what_it_names_and_checks_it_first() {
        let paused = room()
            .changed(
                &RoomChange {
                    state: Some(RoomState::Paused),
                    ..RoomChange::default()
                },
                NOW,
            )
            .expect("paused");
        assert_eq!(
            (paused.max_active(), paused.state()),
            (500, RoomState::Paused)
        );
        let smaller = paused
            .changed(
                &RoomChange {
                    max_active: Some(20),
                    ..RoomChange::default()
                },
                NOW,
            )
            .expect("smaller");
        assert_eq!(
            (smaller.max_active(), smaller.state()),
            (20, RoomState::Paused)
        );
        for bad in [0, -1, i64::from(MAX_ROOM_ACTIVE) + 1] {
            let refused = room()
                .changed(
                    &RoomChange {
                        max_active: Some(bad),
                        state: Some(RoomState::Closed),
                        ..RoomChange::default()
                    },
                    NOW,
                )
                .expect_err("out of range");
            assert_eq!(refused.field, "maxActive");
        }
    }

    #[test]
    fn paused_rooms_admit_nobody_and_closed_ones_turn_newcomers_away() {
        let with = |state| Room::new(RoomId::default_room(), 5, state).expect("a room");
        assert!(with(RoomState::Open).admits() && with(RoomState::Open).accepts_newcomers());
        assert!(!with(RoomState::Paused).admits() && with(RoomState::Paused).accepts_newcomers());
        assert!(with(RoomState::Closed).admits() && !with(RoomState::Closed).accepts_newcomers());
        let policy = with(RoomState::Open).admission_policy(&QueuePolicy::default());
        assert_eq!(policy.max_active, 5);
        assert_eq!(policy.active_ttl, QueuePolicy::default().active_ttl);
    }

    #[test]
    fn state_names_round_trip() {
        for state in [RoomState::Open, RoomState::Paused, RoomState::Closed] {
            assert_eq!(RoomState::parse(state.as_str()), Ok(state));
        }
        assert!(RoomState::parse("open").is_err());
    }

    fn paced_room(per_minute: i64) -> Room {
        room()
            .changed(
                &RoomChange {
                    admit_per_minute: Some(Some(per_minute)),
                    ..RoomChange::default()
                },
                NOW,
            )
            .expect("paced")
    }

    /// Runs admission steps every `step_ms` for `seconds`, with no free place for the first
    /// `idle_ms` (credit builds up) and `free` places after, and returns when each admission
    /// happened (milliseconds from the start).
    fn admissions(
        per_minute: i64,
        step_ms: i64,
        seconds: i64,
        idle_ms: i64,
        free: u32,
    ) -> Vec<i64> {
        let start = time::macros::datetime!(2026-12-01 12:00 UTC);
        let room = paced_room(per_minute);
        let mut pace = Pace::EMPTY;
        let mut at_ms = Vec::new();
        let mut now_ms = 0;
        while now_ms < seconds * 1000 {
            let last_minute = at_ms.iter().filter(|at| **at > now_ms - 60_000).count();
            let now = start + Duration::milliseconds(now_ms);
            let free = if now_ms < idle_ms { 0 } else { free };
            let (allowed, refilled) =
                room.paced(free, u32::try_from(last_minute).unwrap_or(0), pace, now);
            at_ms.extend(std::iter::repeat_n(now_ms, allowed as usize));
            pace = refilled.spent(allowed);
            now_ms += step_ms;
        }
        at_ms
    }

    #[test]
    fn a_paced_room_admits_at_most_its_rate_in_any_minute_and_evenly() {
        // Some runs start idle (no free place): the credit fills up before the line moves.
        let cases = [
            (60, 250, 30_000),
            (600, 250, 0),
            (100, 1000, 0),
            (6000, 250, 20_000),
            (7, 300, 0),
        ];
        for (per_minute, step_ms, idle_ms) in cases {
            let at = admissions(per_minute, step_ms, 180, idle_ms, 1000);
            for (i, start) in at.iter().enumerate() {
                let in_window = at[i..].iter().take_while(|t| **t < start + 60_000).count();
                assert!(
                    in_window as i64 <= per_minute,
                    "{per_minute}/min: {in_window} in a minute"
                );
            }
            // Once places are free the rate is reached, to within a second's worth.
            let expected = per_minute * (180_000 - idle_ms) / 60_000;
            assert!(
                at.len() as i64 >= expected - per_minute / 60 - 2,
                "{per_minute}/min: {}",
                at.len()
            );
            // No burst: never more than about a second's worth in one step.
            let most = at
                .chunk_by(|a, b| a == b)
                .map(<[i64]>::len)
                .max()
                .unwrap_or(0);
            assert!(
                most as i64 <= per_minute / 60 + 1,
                "{per_minute}/min: {most} at once"
            );
        }
    }

    #[test]
    fn an_unpaced_room_fills_every_free_place_and_lifting_the_pace_unpaces_it() {
        let now = time::macros::datetime!(2026-12-01 12:00 UTC);
        assert_eq!(room().paced(7, 100, Pace::EMPTY, now).0, 7);
        let lifted = paced_room(60)
            .changed(
                &RoomChange {
                    admit_per_minute: Some(None),
                    ..RoomChange::default()
                },
                NOW,
            )
            .expect("lifted");
        assert_eq!(lifted.admit_per_minute(), None);
        assert!(paced_room(60).is_paced() && !lifted.is_paced());
        let refused = room()
            .changed(
                &RoomChange {
                    admit_per_minute: Some(Some(0)),
                    ..RoomChange::default()
                },
                NOW,
            )
            .expect_err("zero");
        assert_eq!(refused.field, "admitPerMinute");
    }

    #[test]
    fn a_waiting_rule_holds_from_when_it_is_turned_on_and_keeps_that_start_when_changed() {
        let with = |room: &Room, seconds: Option<i64>, at| {
            room.changed(
                &RoomChange {
                    waiting_idle_seconds: Some(seconds),
                    ..RoomChange::default()
                },
                at,
            )
        };
        let on = with(&room(), Some(60), NOW).expect("on");
        let rule = on.waiting_idle().expect("a rule");
        assert_eq!((rule.after, rule.since), (Duration::minutes(1), NOW));
        let later = NOW + Duration::hours(1);
        let longer = with(&on, Some(300), later).expect("longer");
        assert_eq!(
            longer.waiting_idle().map(|idle| (idle.after, idle.since)),
            Some((Duration::minutes(5), NOW))
        );
        let other = longer
            .changed(&RoomChange::default(), later)
            .expect("unchanged");
        assert_eq!(other.waiting_idle(), longer.waiting_idle());
        let graced = |room: &Room, seconds, at| {
            room.changed(
                &RoomChange {
                    waiting_idle_seconds: Some(Some(seconds)),
                    waiting_idle_grace: Duration::seconds(30),
                    ..RoomChange::default()
                },
                at,
            )
            .expect("changed")
            .waiting_idle()
            .map(|idle| (idle.after, idle.since))
        };
        assert_eq!(
            graced(&longer, 60, later),
            Some((Duration::minutes(1), later + Duration::seconds(30))),
            "shortened: counts anew, after the grace"
        );
        assert_eq!(
            graced(&room(), 60, later),
            Some((Duration::minutes(1), later + Duration::seconds(30))),
            "turned on: after the grace"
        );
        assert_eq!(
            graced(&longer, 600, later),
            Some((Duration::minutes(10), NOW)),
            "lengthened: the start stays"
        );
        let off = with(&longer, None, later).expect("off");
        assert_eq!(off.waiting_idle(), None);
        let again = with(&off, Some(60), later).expect("on again");
        assert_eq!(again.waiting_idle().map(|idle| idle.since), Some(later));
        assert_eq!(
            again.admission_policy(&QueuePolicy::default()).waiting_idle,
            again.waiting_idle()
        );
        for bad in [0, 4, 86_401, -5] {
            let refused = with(&room(), Some(bad), NOW).expect_err("out of range");
            assert_eq!(refused.field, "waitingIdleSeconds");
        }
        assert!(with(&room(), Some(5), NOW).is_ok());
    }
}
