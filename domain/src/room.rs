//! Waiting rooms: each on-sale has its own line. Today the deployment runs one room, `default`,
//! which guards every concert; the operator's controls address rooms by id.

use std::fmt;

use crate::ParseError;

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
}
