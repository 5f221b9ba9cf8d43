//! Points are counted in whole won as `i64`; never a float.

use std::fmt;

use crate::ParseError;

/// A positive amount of points, bounded by the largest single charge allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    /// Parses a charge amount: `1 <= value <= max_charge`.
    pub fn parse(value: i64, max_charge: i64) -> Result<Self, ParseError> {
        if value < 1 {
            return Err(ParseError::new(
                "amount",
                format!("must be at least 1, got {value}"),
            ));
        }
        if value > max_charge {
            return Err(ParseError::new(
                "amount",
                format!("must be at most {max_charge}, got {value}"),
            ));
        }
        Ok(Self(value))
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The price of every seat of one concert date: `0 <= price <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(i64);

impl Price {
    pub fn parse(value: i64, max: i64) -> Result<Self, ParseError> {
        if (0..=max).contains(&value) {
            Ok(Self(value))
        } else {
            Err(ParseError::new(
                "price",
                format!("must be between 0 and {max}, got {value}"),
            ))
        }
    }

    /// A price read back from storage, where it was validated on the way in.
    pub fn from_stored(value: i64) -> Self {
        Self(value.max(0))
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

/// A wallet balance: never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Balance(i64);

impl Balance {
    pub const ZERO: Self = Self(0);

    pub fn new(value: i64) -> Result<Self, ParseError> {
        if value >= 0 {
            Ok(Self(value))
        } else {
            Err(ParseError::new(
                "balance",
                format!("can never be negative, got {value}"),
            ))
        }
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub(crate) fn checked_add(self, amount: i64) -> Option<Self> {
        self.0.checked_add(amount).filter(|v| *v >= 0).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_is_between_one_and_the_largest_charge() {
        assert_eq!(Amount::parse(1, 10).map(Amount::get), Ok(1));
        assert_eq!(Amount::parse(10, 10).map(Amount::get), Ok(10));
        assert!(Amount::parse(0, 10).is_err());
        assert!(Amount::parse(-5, 10).is_err());
        assert_eq!(Amount::parse(11, 10).expect_err("over").field, "amount");
    }

    #[test]
    fn price_may_be_zero_but_not_negative_or_over_the_limit() {
        assert!(Price::parse(0, 100).is_ok());
        assert!(Price::parse(-1, 100).is_err());
        assert!(Price::parse(101, 100).is_err());
    }

    #[test]
    fn balance_is_never_negative() {
        assert!(Balance::new(-1).is_err());
        assert_eq!(Balance::new(5).map(Balance::get), Ok(5));
        assert_eq!(Balance::ZERO.checked_add(-1), None);
    }
}
