//! Identifiers. Users come from an outside identity system (any UUID); everything else is a
//! positive integer drawn by the database.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::ParseError;

/// A user of the outside identity system. Any UUID is a valid user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Uuid);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| ParseError::new("userId", format!("{raw:?} is not a UUID")))
    }

    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub const fn get(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Declares a positive `i64` identifier: zero and negative values never exist.
macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(i64);

        impl $name {
            /// The name a client uses for this identifier.
            pub const FIELD: &'static str = $field;

            pub fn new(value: i64) -> Result<Self, ParseError> {
                if value > 0 {
                    Ok(Self(value))
                } else {
                    Err(ParseError::new($field, format!("must be a positive integer, got {value}")))
                }
            }

            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = ParseError;

            fn from_str(raw: &str) -> Result<Self, ParseError> {
                let value: i64 = raw
                    .parse()
                    .map_err(|_| ParseError::new($field, format!("{raw:?} is not a positive integer")))?;
                Self::new(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

positive_id!(
    /// A concert of the catalog.
    ConcertId,
    "concertId"
);
positive_id!(
    /// A reservation (one seat held, then confirmed, expired or cancelled).
    ReservationId,
    "reservationId"
);
positive_id!(
    /// A completed payment.
    PaymentId,
    "paymentId"
);
positive_id!(
    /// An entry of a wallet's ledger; grows with every entry.
    LedgerEntryId,
    "entryId"
);
positive_id!(
    /// A place in the waiting queue: tickets are drawn in arrival order and admitted in that order.
    TicketNo,
    "ticket"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_parses_any_uuid_and_refuses_the_rest() {
        let id = UserId::parse("3f1c9a52-4c1e-4d8e-9b1a-2f6c1d3e4a5b").expect("a UUID");
        assert_eq!(id.to_string(), "3f1c9a52-4c1e-4d8e-9b1a-2f6c1d3e4a5b");
        let refused = UserId::parse("not-a-uuid").expect_err("not a UUID");
        assert_eq!(refused.field, "userId");
    }

    #[test]
    fn identifiers_are_positive() {
        assert_eq!(ReservationId::new(41).map(ReservationId::get), Ok(41));
        assert!(ReservationId::new(0).is_err());
        assert!(ConcertId::new(-3).is_err());
        assert!("abc".parse::<PaymentId>().is_err());
        assert_eq!("7".parse::<ConcertId>().map(ConcertId::get), Ok(7));
        assert_eq!(
            "0".parse::<ConcertId>().expect_err("zero").field,
            "concertId"
        );
    }
}
