//! Waiting rooms: each on-sale has its own line. Today the deployment runs one room, `default`,
//! which guards every concert; the operator's controls address rooms by id, and a room's
//! settings live in the store so that every instance follows a change.

use std::fmt;

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
}

/// An operator's change to a room: each field that is `Some` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomChange {
    pub max_active: Option<i64>,
    pub state: Option<RoomState>,
}

impl Room {
    pub fn new(id: RoomId, max_active: u32, state: RoomState) -> Result<Self, ParseError> {
        Ok(Self {
            id,
            max_active: parse_max_active(i64::from(max_active))?,
            state,
        })
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

    /// The room after `change`, or why the change is refused (nothing is half applied).
    pub fn changed(&self, change: &RoomChange) -> Result<Self, ParseError> {
        let max_active = change
            .max_active
            .map(parse_max_active)
            .transpose()?
            .unwrap_or(self.max_active);
        Ok(Self {
            id: self.id.clone(),
            max_active,
            state: change.state.unwrap_or(self.state),
        })
    }

    /// The queue policy this room's line runs under: the deployment's deadlines and the room's
    /// maximum.
    pub fn admission_policy(&self, deployment: &QueuePolicy) -> QueuePolicy {
        QueuePolicy {
            max_active: self.max_active,
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

fn parse_max_active(raw: i64) -> Result<u32, ParseError> {
    u32::try_from(raw)
        .ok()
        .filter(|max| (1..=MAX_ROOM_ACTIVE).contains(max))
        .ok_or_else(|| ParseError::new("maxActive", format!("must be 1 to {MAX_ROOM_ACTIVE}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            .changed(&RoomChange {
                state: Some(RoomState::Paused),
                ..RoomChange::default()
            })
            .expect("paused");
        assert_eq!(
            (paused.max_active(), paused.state()),
            (500, RoomState::Paused)
        );
        let smaller = paused
            .changed(&RoomChange {
                max_active: Some(20),
                ..RoomChange::default()
            })
            .expect("smaller");
        assert_eq!(
            (smaller.max_active(), smaller.state()),
            (20, RoomState::Paused)
        );
        for bad in [0, -1, i64::from(MAX_ROOM_ACTIVE) + 1] {
            let refused = room()
                .changed(&RoomChange {
                    max_active: Some(bad),
                    state: Some(RoomState::Closed),
                })
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
}
