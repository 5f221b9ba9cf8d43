//! Waiting rooms: each on-sale has its own line. Today the deployment runs one room, `default`,
//! which guards every concert; the operator's controls address rooms by id, and a room's
//! settings live in the store so that every instance follows a change.

use std::fmt;

use time::{Duration, OffsetDateTime};

use crate::queue::WaitingIdle;
use crate::{ParseError, QueuePolicy};

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

/// The most tokens a room may have active at once.
pub const MAX_ROOM_ACTIVE: u32 = 1_000_000;

/// A room's live settings, as an operator sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    id: RoomId,
    max_active: u32,
    state: RoomState,
    admit_per_minute: Option<u32>,
    waiting_idle: Option<WaitingIdle>,
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
    pub fn new(id: RoomId, max_active: u32, state: RoomState) -> Result<Self, ParseError> {
        Ok(Self {
            id,
            max_active: parse_max_active(i64::from(max_active))?,
            state,
            admit_per_minute: None,
            waiting_idle: None,
        })
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
            id: self.id.clone(),
            max_active,
            state: change.state.unwrap_or(self.state),
            admit_per_minute,
            waiting_idle,
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
