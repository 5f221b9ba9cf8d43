//! Client-chosen keys that make a retry of a charge or a payment safe.

use crate::ParseError;

/// 1 to 64 visible ASCII characters, as sent in the `Idempotency-Key` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let field = "Idempotency-Key";
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(ParseError::new(field, "must be 1 to 64 characters long"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError::new(
                field,
                "must be visible ASCII characters only",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The operation a key belongs to: keys are scoped per user and per operation, so a charge key and
/// a payment key never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdempotencyScope {
    Charge,
    Payment,
}

impl IdempotencyScope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "charge",
            Self::Payment => "payment",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_one_to_sixty_four_visible_ascii_characters() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(64)).is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(65)).is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse("ünïcode").is_err());
        assert_eq!(
            IdempotencyKey::parse("").expect_err("empty").field,
            "Idempotency-Key"
        );
    }
}
